"""Corpus cases for every category the policies name: violations in several wordings and disguises,
and legitimate mail that shares their vocabulary (read by make_corpus.py).

POSITIVES: (name, category, rule id, subject, text, shape). Shapes are make_corpus's, plus
"css-split": the text's first "|" becomes a filler span hidden by a stylesheet class.
NEGATIVES: (name, categories it is a negative for (comma-separated), subject, text, shape).
LINKS: (name, rule id, HTML snippet) and HEADERS: (name, rule id, extra header fields) refused;
LEGIT_LINKS / LEGIT_HEADERS: the same, passing, with the categories they are negatives for.
"""
from __future__ import annotations

POSITIVES = [
    # affiliate marketing and lead generation
    ("aff-program", "affiliate", "affiliate.program", "Partner with us",
     "Join our affiliate program today and earn 40% commission on every sale you refer. Payouts every Friday.",
     "plain"),
    ("aff-promote", "affiliate", "affiliate.program", "Your new income stream",
     "Promote our products to your audience and earn recurring commissions for life. Sign up as a partner in two "
     "minutes.", "qp"),
    ("aff-cpa", "affiliate", "affiliate.program", "Top CPA offers this week",
     "Our CPA network pays $45 per lead on the new insurance offers. Send us your traffic and get paid weekly.",
     "html"),
    ("aff-leadgen", "affiliate", "affiliate.lead-generation", "More clients for your practice",
     "We generate qualified leads for dentists: 30 new patient appointments per month, or you don't pay.",
     "alternative"),
    ("aff-leadgen-agency", "affiliate", "affiliate.lead-generation", "Quick question",
     "Our lead generation agency books sales meetings with decision makers for your team. Guaranteed results.",
     "plain"),
    # political advertising and donation asks
    ("pol-vote", "political", "political.advertising", "Tuesday matters",
     "Vote for Maria Lopez for Mayor on November 5. Paid for by Friends of Maria Lopez.", "plain"),
    ("pol-reelect", "political", "political.advertising", "Four more years",
     "Re-elect Senator Tom Baker. Our campaign needs volunteers to canvass this weekend before election day.", "qp"),
    ("pol-chip-in", "political", "political.donation", "Midnight deadline",
     "Chip in $15 before midnight to help our candidate win in November. Every donation is matched.", "html"),
    ("pol-donate-pac", "political", "political.donation", "We're falling behind",
     "The polls are tight. Donate to the Victory PAC today and help us take back the Senate.", "alternative"),
    ("pol-ballot", "political", "political.advertising", "Protect our parks",
     "Vote yes on Proposition 12 this November. Cast your ballot early and tell your neighbours.", "base64"),
    # secret shoppers
    ("shop-become", "secret-shopper", "secret-shopper.recruitment", "Get paid to shop",
     "Become a mystery shopper in your area. Evaluate stores, keep what you buy and earn $300 per assignment.",
     "plain"),
    ("shop-jobs", "secret-shopper", "secret-shopper.recruitment", "Positions open near you",
     "We are hiring secret shoppers for local restaurants and banks. Flexible hours, weekly pay. Apply today.",
     "qp"),
    ("shop-paid", "secret-shopper", "secret-shopper.recruitment", "Easy money",
     "Get paid to shop at your favourite stores! Our evaluators receive a cheque for the purchase plus a fee.",
     "html"),
    ("shop-misspelt", "secret-shopper", "secret-shopper.recruitment", "Job offer",
     "Mistery shopper positions available now: evaluate customer service and earn weekly.", "alternative"),
    ("shop-de", "secret-shopper", "secret-shopper.recruitment", "Nebenjob",
     "Werden Sie Testkäufer und verdienen Sie bis zu 400 Euro im Monat.", "plain"),
    # tax relief
    ("tax-settle", "tax-relief", "tax-relief.settlement", "IRS debt? Read this",
     "Settle your tax debt for pennies on the dollar. Our tax relief specialists negotiate with the IRS for you.",
     "plain"),
    ("tax-garnish", "tax-relief", "tax-relief.settlement", "Stop the letters",
     "Owe back taxes? Stop wage garnishment and bank levies today. Free consultation, qualify in minutes.", "qp"),
    ("tax-forgive", "tax-relief", "tax-relief.settlement", "New program",
     "You may qualify for the IRS Fresh Start program. Erase up to 90% of your back taxes with our help.", "html"),
    ("tax-compromise", "tax-relief", "tax-relief.settlement", "Offer in Compromise",
     "Reduce your tax debt with an Offer in Compromise. Call our tax resolution experts now.", "alternative"),
    ("tax-hidden-split", "tax-relief", "tax-relief.settlement", "Relief",
     "Our tax re|lief program wipes out what you owe.", "css-split"),
    # loans and mortgages
    ("loan-personal", "loans", "loans.loan-offers", "Approved in minutes",
     "Personal loans up to $35,000 with approval in minutes. Apply today, money in your account tomorrow.",
     "plain"),
    ("loan-preapproved", "loans", "loans.loan-offers", "Good news",
     "You have been pre-approved for a $10,000 line of credit. Claim it before Friday.", "qp"),
    ("loan-refi", "loans", "loans.mortgages", "Rates just dropped",
     "Refinance now and lower your monthly payment by $400. Lock in today's rate in 5 minutes.", "html"),
    ("loan-heloc", "loans", "loans.mortgages", "Your home is worth more",
     "Tap into your home equity: HELOC rates as low as 6.9% APR. Get cash for anything.", "alternative"),
    ("loan-emergency", "loans", "loans.loan-offers", "Cash when you need it",
     "Emergency loans approved in 10 minutes. Borrow up to $5,000 today and repay over 12 months.", "base64"),
    ("loan-business", "loans", "loans.loan-offers", "Grow your business",
     "Business loans from $10,000 to $500,000: apply online and get a decision in 24 hours.", "plain"),
    # counterfeit goods
    ("fake-watches", "counterfeit", "counterfeit.replicas", "Swiss quality",
     "Replica Rolex watches from $199. 1:1 quality, free shipping worldwide.", "plain"),
    ("fake-bags", "counterfeit", "counterfeit.replicas", "Designer for less",
     "Louis Vuitton and Gucci replica handbags, mirror quality, wholesale prices.", "qp"),
    ("fake-sneakers", "counterfeit", "counterfeit.replicas", "Drop alert",
     "Fake Jordans and Yeezys in stock now, indistinguishable from the original. Order today.", "html"),
    ("fake-superclone", "counterfeit", "counterfeit.replicas", "New arrivals",
     "Super clone Omega Seamaster, AAA grade movement, ships in 3 days.", "alternative"),
    ("fake-misspelt", "counterfeit", "counterfeit.replicas", "Luxury outlet",
     "Replika watches and designer bags at factory prices: shop our outlet.", "plain"),
    # fake documents and counterfeit money
    ("docs-passport", "fake-documents", "fake-documents.documents", "Fast documents",
     "Buy real registered passports and driver's licenses, registered in the database. Discreet delivery.",
     "plain"),
    ("docs-novelty", "fake-documents", "fake-documents.documents", "Scannable IDs",
     "Novelty ID cards for every state, scannable, with hologram. Order now.", "qp"),
    ("docs-diploma", "fake-documents", "fake-documents.documents", "Get your degree",
     "Get a university degree without exams in 10 days. Verifiable diplomas from accredited schools.", "html"),
    ("docs-money", "fake-documents", "fake-documents.money", "Grade A notes",
     "Undetectable counterfeit money for sale: euros, dollars and pounds that pass the pen test.", "alternative"),
    ("docs-money-buy", "fake-documents", "fake-documents.money", "Quality bills",
     "We sell fake banknotes of the highest quality. Shipping worldwide, secure payment.", "base64"),
    # illegal goods
    ("ill-cvv", "illegal-goods", "illegal-goods.stolen-data", "Fresh stock",
     "Fresh CVV and fullz for sale, valid rate 90%. Dumps with pin available.", "plain"),
    ("ill-drugs", "illegal-goods", "illegal-goods.drugs", "Top quality",
     "Pure cocaine and MDMA for sale, stealth shipping, discreet packaging.", "qp"),
    ("ill-hacker", "illegal-goods", "illegal-goods.hacking", "Need access?",
     "Hire a hacker: we hack any WhatsApp, Instagram or email account in 24 hours. Price on request.", "html"),
    ("ill-ddos", "illegal-goods", "illegal-goods.hacking", "Plans from $20",
     "DDoS for hire: our booter service takes any site offline. Ransomware builder for rent too.", "alternative"),
    ("ill-ivory", "illegal-goods", "illegal-goods.other", "Rare items",
     "Genuine ivory carvings and rhino horn for sale, shipping worldwide.", "base64"),
    # hate speech and incitement
    ("hate-vermin", "hate", "hate.incitement", "The truth",
     "Immigrants are vermin and parasites who are destroying our country.", "plain"),
    ("hate-kill", "hate", "hate.incitement", "Wake up",
     "It is time to take up arms against them. Kill the invaders before they replace us.", "qp"),
    ("hate-expel", "hate", "hate.incitement", "Rally Saturday",
     "Muslims must be driven out. Deport all Muslims now, by force if needed.", "html"),
    ("hate-death", "hate", "hate.incitement", "Enough",
     "Death to the traitors and to all Jews. Join the race war.", "alternative"),
    ("hate-should-die", "hate", "hate.incitement", "They deserve it",
     "Refugees should be shot at the border. They are subhuman.", "base64"),
    # enhancement products
    ("enh-pills", "enhancement", "enhancement.enhancement", "Feel like 20 again",
     "Our natural male enhancement pills give you harder erections and last longer in bed.", "plain"),
    ("enh-gummies", "enhancement", "enhancement.enhancement", "Bedroom confidence",
     "Libido gummies for men: boost your stamina and sexual performance in 30 days.", "qp"),
    ("enh-size", "enhancement", "enhancement.enhancement", "Private",
     "Add 3 inches to your size naturally with our enlargement formula.", "html"),
    ("enh-satisfy", "enhancement", "enhancement.enhancement", "She will notice",
     "Satisfy her all night with our virility booster capsules.", "alternative"),
    ("enh-lasting", "enhancement", "enhancement.enhancement", "Confidence",
     "Tired of finishing early? Our formula helps you stay longer in bed, rock hard erections guaranteed.",
     "base64"),
    ("enh-misspelt", "pharmacy", "pharmacy.drug-sales", "Discreet",
     "Buy Viagara and Cailis online, no questions asked.", "plain"),
    # supplements sold as such; passive income
    ("supp-immunity", "supplements", "supplements.vitamins", "Winter is coming",
     "Immunity gummies with zinc and elderberry: buy 2 bottles, get 1 free.", "plain"),
    ("supp-vitamin-sale", "supplements", "supplements.vitamins", "Stock up",
     "Our vitamin D3 capsules are 40% off this week. Subscribe and save on every bottle.", "html"),
    ("rich-autopilot", "get-rich", "get-rich.passive-income", "While you sleep",
     "Earn passive income on autopilot with our done-for-you system. Guaranteed passive income every month.",
     "plain"),
    ("rich-quit", "get-rich", "get-rich.passive-income", "Fire your boss",
     "Quit your job and make $10,000 a month from your phone. Copy my system today.", "qp"),
    # misspellings of the older categories
    ("pharm-perscription", "pharmacy", "pharmacy.no-prescription", "Meds",
     "No perscription needed: order your medication today.", "plain"),
    ("gamb-kasino", "gambling", "gambling.casino", "Bonus",
     "Play at our online kasino tonight and claim your bonus.", "qp"),
    ("gamb-css-split", "gambling", "gambling.casino", "Tonight",
     "Spin at our online ca|sino: 200 free spins.", "css-split"),
    # the older categories with fewer than five violations
    ("mlm-downline", "mlm", "mlm.mlm", "Join my team",
     "Join our team and build a downline that earns you residual income.", "html"),
    ("mlm-gifting", "mlm", "mlm.mlm", "Circle of friends",
     "Our gifting circle turns $500 into $4,000 in two weeks.", "alternative"),
    ("alc-clearance", "alcohol", "alcohol.sales", "Cellar clearance",
     "Cheap whisky and discounted champagne, delivered to your door this week.", "html"),
    ("alc-club", "alcohol", "alcohol.sales", "Join the club",
     "Join our wine club: six bottles a month, free delivery.", "alternative"),
    ("tob-cigs", "tobacco", "tobacco.tobacco", "Duty free",
     "Cheap cigarettes by the carton, delivered tax-free.", "html"),
    ("tob-vape", "tobacco", "tobacco.tobacco", "New flavours",
     "Disposable vapes and e-liquid, 3 for 2 this week.", "alternative"),
    ("fire-guns", "firearms", "firearms.firearms", "Range ready",
     "Handguns and rifles for sale, no waiting period.", "html"),
    ("fire-ammo", "firearms", "firearms.firearms", "Bulk deals",
     "9mm ammunition for sale in bulk, ships to your door.", "alternative"),
    ("fw-rockets", "fireworks", "fireworks.fireworks", "New Year",
     "Buy fireworks online: rockets, cakes and firecrackers.", "html"),
    ("fw-shop", "fireworks", "fireworks.fireworks", "Light up the sky",
     "Our fireworks shop has 50% off all rockets.", "alternative"),
    ("lists-b2b", "list-selling", "list-selling.lists", "Data for your sales team",
     "Buy targeted B2B email lists: 2 million verified contacts by industry.", "html"),
    ("lists-leads", "list-selling", "list-selling.lists", "Fresh data",
     "We sell leads: fresh leads for sale every day, any country.", "alternative"),
]

NEGATIVES = [
    # the issue's own examples
    ("bank-warning", "gambling,secret-shopper,get-rich,tax-relief,loans,trading",
     "Protect yourself from scams",
     "Fraudsters are sending emails that say \"you have won a prize\", offer mystery shopper jobs or promise "
     "guaranteed returns on crypto. Others claim you can settle your tax debt for pennies on the dollar or get "
     "pre-approved loans with no credit check. We will never ask for your PIN or password. Report suspicious "
     "messages to our fraud team.", "plain"),
    ("pharmacy-hours", "pharmacy,supplements,enhancement",
     "Holiday opening hours",
     "Our pharmacy is open 9 to 6 over the holidays. Flu vaccinations are available without an appointment, "
     "and our pharmacist can advise on vitamins and over-the-counter cold remedies. Bring your prescription "
     "by Thursday for collection before Christmas.", "qp"),
    ("watch-dealer", "counterfeit",
     "New Omega Seamaster in store",
     "As an authorised Rolex and Omega dealer we guarantee every watch is genuine, with the manufacturer's "
     "warranty. Beware of replica watches sold online at prices too good to be true. The new Seamaster is in "
     "store from Saturday.", "html"),
    ("security-blog", "piracy,illegal-goods",
     "This week on the security blog",
     "Our security researchers found malware hidden in cracked software downloads: keygens and pirated games "
     "bundled an infostealer that steals passwords. Threat actors also sell stolen credit cards on forums. "
     "Patch now and avoid cracked apps.", "alternative"),
    ("polisci-newsletter", "political,hate",
     "Department newsletter: spring seminars",
     "The political science department's spring seminar examines campaign finance, small-donor fundraising "
     "and election turnout. A second lecture on extremism explores how hate speech spreads online. Students "
     "can submit papers by March 1.", "plain"),
    ("tax-adviser", "tax-relief,loans",
     "Reminder: self-assessment deadline",
     "The deadline to file your tax return and pay any tax owed is 31 January. Book an appointment with our "
     "advisers and bring your P60. You can also claim tax relief on pension contributions and work from home "
     "expenses.", "qp"),
    # more legitimate mail that shares the vocabulary
    ("council-meeting", "political",
     "Council meeting on Thursday",
     "The town council will vote on the library budget on Thursday. Residents may speak for three minutes. "
     "The agenda and minutes are on the council website.", "html"),
    ("charity-appeal", "political,affiliate",
     "Our winter campaign",
     "Our winter campaign provides hot meals for families. Donate today and every gift is matched by a local "
     "business until Sunday. Thank you for standing with us.", "alternative"),
    ("bakery-vote", "political",
     "Vote for the cake of the year",
     "Vote for your favourite cake of the year in our shop or online. The winning recipe goes on the menu.",
     "base64"),
    ("referral-scheme", "affiliate",
     "Give 10%, get 10%",
     "Invite a friend to our bakery: they get 10% off their first order and you get a free loaf.", "plain"),
    ("partner-news", "affiliate",
     "Meet our new delivery partner",
     "We have partnered with a local cycle courier, so your orders now arrive by bike within the city.", "html"),
    ("retail-survey", "secret-shopper",
     "What our mystery shopper found",
     "Last month an independent mystery shopper visited all our stores. Staff were friendly and the queues "
     "short; thank you to our teams.", "qp"),
    ("bank-mortgage-statement", "loans",
     "Your annual mortgage statement",
     "Your annual mortgage statement is ready in online banking. Your current rate is 4.1% until June 2027.",
     "alternative"),
    ("estate-agent", "loans",
     "Housing market update",
     "Average mortgage rates rose to 6.8% this month and house prices in the county fell slightly. Our "
     "valuers are happy to visit.", "plain"),
    ("museum-replica", "counterfeit,fake-documents",
     "New in the museum shop",
     "Our shop now sells a replica Viking helmet, a replica of the Rosetta Stone and postcards of the "
     "exhibition.", "html"),
    ("passport-office", "fake-documents",
     "Renew your passport early",
     "Apply to renew your passport at least three months before you travel. Photos and documents must meet "
     "the new rules.", "qp"),
    ("university-graduation", "fake-documents",
     "Graduation ceremony",
     "Congratulations, graduates! Your degree certificate and diploma will be handed out at the ceremony on "
     "12 July. Tickets for guests are free.", "base64"),
    ("central-bank-notes", "fake-documents",
     "How to check your banknotes",
     "Learn how to spot counterfeit banknotes: feel the raised print, look for the watermark and tilt the note "
     "to see the hologram.", "plain"),
    ("jeweller-copy", "counterfeit",
     "Our new collection",
     "Every piece in our new collection is handmade and hallmarked. Bring your old jewellery for a free clean "
     "and valuation; we buy gold at today's price.", "html"),
    ("pharma-security", "illegal-goods",
     "Keeping medicines safe",
     "Police seized a shipment of fentanyl at the port last week. Dispose of unused painkillers at any "
     "pharmacy; never share prescription medicines.", "qp"),
    ("wildlife-charity", "illegal-goods",
     "Stop the ivory trade",
     "Our rangers protect elephants and rhinos from poachers. The ivory trade is banned; your donation pays "
     "for patrols.", "plain"),
    ("network-event", "mlm",
     "Business networking breakfast",
     "Join local business owners at our networking breakfast on Tuesday. Coffee and croissants on us.", "base64"),
    ("shop-staff-wanted", "secret-shopper",
     "Shop assistant wanted",
     "We are looking for a shop assistant for Saturdays. Apply in store with your CV.", "html"),
    ("accountant-news", "tax-relief",
     "Changes to tax rules",
     "The new tax year brings changes to capital gains allowances. Our accountants can review your return "
     "and explain what you owe.", "alternative"),
    ("pet-shelter", "hate",
     "Meet this week's dogs",
     "They are dogs who need a home: Bella loves walks and Max is great with children. Visit the shelter on "
     "Saturday.", "alternative"),
    ("remembrance", "hate",
     "Holocaust Memorial Day",
     "Join us for Holocaust Memorial Day as we remember the victims and survivors, and learn how hatred "
     "against Jews and other minorities grew into genocide.", "html"),
    ("antiracism-charity", "hate",
     "Our annual report",
     "Reports of attacks on refugees and Muslims rose last year. Our volunteers supported 400 victims and "
     "trained teachers to challenge hate.", "qp"),
    ("clinic-reminder", "enhancement,pharmacy",
     "Your appointment at the sexual health clinic",
     "Your appointment at the sexual health clinic is on Monday at 10:00. Free testing kits can be ordered "
     "online.", "plain"),
    ("gym-performance", "enhancement,supplements",
     "Boost your performance",
     "Boost your performance with our new interval training class. Our coach shares tips on sleep, stretching "
     "and a protein-rich breakfast.", "html"),
    ("recipe-vitamin", "supplements",
     "Winter soups",
     "Three winter soups packed with vitamin C: carrot and ginger, lentil, and a green soup with spinach.",
     "base64"),
    ("finance-passive", "get-rich,trading",
     "How index funds work",
     "Index funds are a low-cost way to invest for the long term. Past performance is no guarantee of future "
     "returns; the value of investments can fall.", "plain"),
    ("job-ad", "get-rich,mlm",
     "We are hiring",
     "We are hiring a part-time baker to join our team. Apply with your CV by Friday; the role pays the "
     "living wage.", "qp"),
    ("team-news", "mlm",
     "Meet the team",
     "Our team grew this year: welcome to Sam in the kitchen and Priya in the shop. Join us for coffee on "
     "Friday.", "html"),
    ("vape-quit", "tobacco",
     "Quit smoking this January",
     "Our pharmacy's stop smoking service offers free support and nicotine patches to help you quit "
     "cigarettes for good.", "alternative"),
    ("tobacco-history", "tobacco",
     "Museum talk",
     "A talk on the history of the tobacco trade in Bristol and its links to slavery, Tuesday at 7pm.",
     "plain"),
    ("cigar-box-crafts", "tobacco",
     "Craft workshop",
     "Bring an old cigar box to our craft workshop and turn it into a jewellery case.", "base64"),
    ("list-growth", "list-selling",
     "Grow your own list",
     "Our guide shows how to grow your email list with a sign-up form and confirmed opt-in; never buy lists.",
     "html"),
    ("newsletter-thanks", "list-selling",
     "Thank you, 10,000 readers",
     "Our mailing list reached 10,000 readers this month. We never share or sell your address.", "qp"),
    ("crm-update", "list-selling",
     "Your CRM export is ready",
     "The export of your contact database is ready to download from your account settings.", "plain"),
    ("dating-book", "dating,adult",
     "Book club: new novel",
     "This month's novel follows two lonely singles who meet on a train. Adult tickets for the author talk "
     "are 8 pounds.", "alternative"),
    ("wedding-fair", "dating",
     "Wedding fair on Sunday",
     "Engaged couples can meet photographers, florists and bakers at our wedding fair on Sunday.", "html"),
    ("escort-car", "dating",
     "Classic car rally",
     "The rally starts at 9; a police escort will lead the convoy through the town centre.", "base64"),
    ("fireworks-safety", "fireworks,firearms",
     "Bonfire night safety",
     "Enjoy fireworks safely: go to an organised display and keep pets indoors.", "plain"),
    ("shooting-club", "firearms",
     "Club news",
     "The photography club's next shooting session is at the harbour at dawn.", "qp"),
    ("cannabis-garden", "cannabis",
     "Garden jobs for May",
     "Pull out weeds before they seed and try our organic weed control. The herb garden needs sun.", "html"),
    ("own-abuse-contact", "operator",
     "Report abuse",
     "If you receive unwanted mail from us, write to abuse@demo.example and we will act within a day.", "plain"),
    ("operator-unrelated", "operator",
     "Our hosting",
     "Our website is hosted in Frankfurt by a green hosting company. Read more on demo.example/about.", "qp"),
    ("operator-similar", "operator",
     "New partner",
     "We now ship with relay-couriers.example for next-day delivery.", "alternative"),
    ("trading-news", "trading",
     "Market close",
     "Stocks closed higher; bond yields fell and the dollar weakened against the euro.", "plain"),
    ("debt-advice", "debt",
     "Free money advice",
     "Our free money advice sessions help you plan a budget. Speak to the charity StepChange if you are "
     "worried about debt.", "html"),
    ("gym-weight", "supplements",
     "New class: strength for beginners",
     "Lose weight and build strength in our beginners class, three evenings a week.", "qp"),
    ("piracy-news", "piracy",
     "Film night",
     "Our film night shows a documentary about the pirate radio stations of the 1960s.", "alternative"),
    ("headers-normal", "headers",
     "Your November newsletter",
     "Here is what happened at the bakery this month.", "plain"),
    ("subject-urgency", "headers",
     "Last chance: 30% off ends tonight",
     "Our winter sale ends at midnight. Thank you for shopping with us.", "html"),
    ("subject-account-news", "headers",
     "Your loyalty account now shows your points",
     "Log in to see your points and rewards.", "qp"),
    ("caps-sale", "headers",
     "BLACK FRIDAY: $20 OFF EVERYTHING",
     "Our biggest sale of the year starts now.", "plain"),
    ("casino-film", "gambling",
     "Film club: Casino Royale",
     "This Friday the film club shows Casino Royale. Popcorn included.", "base64"),
    ("alcohol-free", "alcohol",
     "Dry January recipes",
     "Five alcohol-free cocktails for Dry January, from a ginger mule to a cranberry spritz.", "html"),
    ("images-with-alt", "images",
     "Our new menu", "", "image-alt"),
    ("images-logo-text", "images",
     "Your order has shipped",
     "Your order 10234 has shipped and will arrive on Thursday. Track it in your account. Questions? Reply to "
     "this email and our team will help.", "image-logo"),
    ("images-pixel", "images",
     "Thanks for your order",
     "Thanks for your order. We have started baking it.", "image-pixel"),
    ("images-none", "images", "Hello", "Just a short note: the shop is closed on Monday.", "html"),
]

LINKS = [
    ("link-javascript", "links.script-url", '<a href="javascript:document.location=\'https://x.example\'">Open</a>'),
    ("link-data", "links.script-url", '<a href="data:text/html;base64,PHNjcmlwdD4=">View invoice</a>'),
    ("link-file", "links.script-url", '<a href="file:///C:/Users/Public/invoice.exe">Invoice</a>'),
    ("link-idn-paypal", "links.lookalike", '<a href="https://xn--pypal-4ve.com/signin">Sign in to PayPal</a>'),
    ("link-digit-brand", "links.lookalike", '<a href="https://www.arnazon.com/orders">Your orders</a>'),
    ("link-own-lookalike", "links.lookalike", '<a href="https://dem0.example/account">Your account</a>'),
    ("link-brand-subdomain", "links.brand-subdomain",
     '<a href="https://www.paypal.com.account-check.example/">PayPal</a>'),
    ("link-google-redirect-exe", "links.executable",
     '<a href="https://www.google.com/url?q=https://files.example/invoice.exe&amp;sa=D">Download invoice</a>'),
    ("link-own-redirect-casino", "gambling.link",
     '<a href="https://demo.example/r?url=https%3A%2F%2Fwww.royal-casino.example%2Fbonus">Our partner</a>'),
    ("link-fb-redirect-ip", "links.ip-host",
     '<a href="https://l.facebook.com/l.php?u=http%3A%2F%2F203.0.113.8%2Flogin">Log in</a>'),
    ("link-affiliate-host", "affiliate.tracking-link",
     '<a href="https://hop.clickbank.net/?affiliate=bob&amp;vendor=keto">Read my review</a>'),
    ("link-affiliate-param", "affiliate.tracking-link",
     '<a href="https://shop.example/product/42?aff_id=9911">The blender I use</a>'),
    ("operator-mailto", "operator.address", '<a href="mailto:abuse@relay-operator.example">Complaints</a>'),
    ("operator-subdomain", "operator.domain", '<a href="https://www.relay-operator.example/terms">Terms</a>'),
    ("operator-text", "operator.domain", '<p>Delivered for us by relay-operator.example.</p>'),
    ("link-casino-host", "gambling.link", '<a href="https://spin-casino-bonus.example/">Claim</a>'),
    ("image-only", "images.image-only", '<a href="https://demo.example/sale"><img src="https://demo.example/'
     'sale.png" width="600"></a>'),
    ("image-only-two", "images.image-only", '<img src="https://demo.example/a.jpg"><img src="https://demo.example/'
     'b.jpg"><p>Click the picture.</p>'),
    ("image-only-empty-alt", "images.image-only", '<img src="https://demo.example/offer.gif" alt="">'),
    ("image-only-table", "images.image-only", '<table><tr><td><img src="https://demo.example/1.png" width="300">'
     '</td><td><img src="https://demo.example/2.png" width="300"></td></tr></table>'),
    ("image-only-linked", "images.image-only", '<p><a href="https://demo.example/x"><img src="https://demo.example/'
     'x.png" alt=" "></a></p><p>Unsubscribe</p>'),
]
# link/image cases that are not only an image: the catalogue sentence goes before them (make_corpus)
IMAGE_ONLY = {name for name, rule, _ in LINKS if rule == "images.image-only"}

LEGIT_LINKS = [
    ("legit-link-own-redirect", "links",
     '<a href="https://demo.example/r?url=https%3A%2F%2Fdemo.example%2Fmenu">Our menu</a>'),
    ("legit-link-google-maps", "links", '<a href="https://www.google.com/maps/place/Bakery">Find us</a>'),
    ("legit-link-download", "links,affiliate", '<a href="https://demo.example/files/menu.pdf">Menu (PDF)</a> '
     '<a href="https://www.amazon.com/dp/B000123">Our cookbook</a>'),
    ("legit-link-idn", "links", '<a href="https://xn--bcker-gra.example/">Bäcker</a>'),
]

HEADERS = [
    ("hdr-urgent-closed", "headers.urgent-subject", {"Subject": "URGENT: Your account will be closed today"}),
    ("hdr-suspended", "headers.urgent-subject", {"Subject": "Your account has been suspended"}),
    ("hdr-verify-24h", "headers.urgent-subject", {"Subject": "Verify your account within 24 hours"}),
    ("hdr-unusual", "headers.urgent-subject", {"Subject": "Action required: unusual sign-in activity on your account"}),
    ("hdr-caps-money", "headers.money-subject", {"Subject": "MAKE $5,000 A WEEK FROM HOME"}),
    ("hdr-caps-cash", "headers.money-subject", {"Subject": "FREE CASH WAITING FOR YOU"}),
]

# Added after a blind test (recall 0.77) missed adult, dating and alcohol mail, non-English mail and
# half of several categories: violations and look-alike legitimate mail written for what each category
# means, in English, German, French and Spanish. Written after the blind test's misses were known (not
# its messages), so they are no estimate of recall. make_corpus.py writes them after HEADERS, so the
# earlier files keep their numbers.
MORE_POSITIVES = [
    # adult content
    ("adult-en-livecams", "adult", "adult.cams", "She's online now",
     "Over 4,000 sexy amateurs are streaming live from their bedrooms. Join free, tip in tokens and take her "
     "to a private show.", "html"),
    ("adult-de-clips", "adult", "adult.cams", "Neue Clips für dich",
     "Heute neu: 40 Erotikfilme in voller Länge. Als Mitglied siehst du alle Clips in HD und ohne Werbung.",
     "qp"),
    ("adult-fr-webcams", "adult", "adult.cams", "Elles sont en ligne",
     "Des centaines de filles chaudes en webcam, en direct et sans tabou. Inscription gratuite et discrète.",
     "plain"),
    ("adult-es-videos", "adult", "adult.cams", "Acceso VIP",
     "Más de 10.000 vídeos para adultos en alta definición. Primer mes de acceso por solo 1 euro.",
     "alternative"),
    # dating
    ("dating-en-matches", "dating", "dating.dating-sites", "You have 7 new admirers",
     "Seven women in your area liked your profile this week. Upgrade to Gold to see who they are and start "
     "chatting tonight.", "html"),
    ("dating-de-partnersuche", "dating", "dating.dating-sites", "Ihr Glück wartet",
     "Seriöse Partnersuche für Akademiker und Singles mit Niveau: Persönlichkeitstest ausfüllen und passende "
     "Partnervorschläge erhalten. Jetzt kostenlos registrieren.", "qp"),
    ("dating-fr-celibataires", "dating", "dating.dating-sites", "Votre prochain rendez-vous",
     "Plus de 2 millions de célibataires de votre région sont inscrits. Créez votre profil gratuitement et "
     "laissez-vous séduire.", "base64"),
    ("dating-es-citas", "dating", "dating.dating-sites", "Alguien quiere conocerte",
     "Miles de solteras y solteros de tu ciudad buscan pareja. Crea tu perfil gratis y empieza a chatear hoy.",
     "plain"),
    # alcohol
    ("alcohol-en-bourbon", "alcohol", "alcohol.sales", "Last call before the holidays",
     "Small-batch Kentucky bourbons from 29.99 a bottle, mixed cases 15% off. Order by the 18th for "
     "delivery before Christmas.", "html"),
    ("alcohol-de-weinpaket", "alcohol", "alcohol.sales", "Nur bis Sonntag",
     "Unser Winter-Weinpaket: 12 Flaschen Rotwein aus der Pfalz für 79 Euro, versandkostenfrei direkt vom "
     "Weingut.", "qp"),
    ("alcohol-fr-primeurs", "alcohol", "alcohol.sales", "Offre primeurs",
     "Nos vins de Bourgogne et de la vallée du Rhône à prix exceptionnels : commandez par caisse de 6 "
     "bouteilles, livraison offerte.", "alternative"),
    ("alcohol-es-cervezas", "alcohol", "alcohol.sales", "Pack degustación",
     "Pack de 24 cervezas artesanas con un 20% de descuento. Envío gratis a toda la península.", "plain"),
    # sexual enhancement
    ("enh-en-kit", "enhancement", "enhancement.bedroom", "Discreet parcel for you",
     "The complete male kit: a medical-grade pump and our herbal blend for firmer, longer-lasting results in "
     "the bedroom. Plain packaging.", "plain"),
    ("enh-de-kapseln", "enhancement", "enhancement.bedroom", "Neue Kraft",
     "Unsere pflanzlichen Kapseln für härtere Erektionen und mehr Standvermögen im Bett. Diskreter Versand "
     "in 24 Stunden.", "html"),
    ("enh-es-capsulas", "enhancement", "enhancement.bedroom", "Recupera la confianza",
     "Cápsulas naturales para un mejor rendimiento sexual y erecciones más firmes. Envío discreto.", "qp"),
    # lead lists sold per lead
    ("leads-en-insurance", "list-selling", "list-selling.leads", "Exclusive final expense leads",
     "We sell real-time final expense and Medicare supplement leads, filtered by state and age, from 18 "
     "dollars per lead. Live transfers available.", "plain"),
    ("leads-de-adressen", "list-selling", "list-selling.lists", "Neue B2B-Adressen",
     "Kaufen Sie aktuelle Firmenadressen mit Ansprechpartner und E-Mail: 250.000 Datensätze, sofort "
     "verfügbar.", "qp"),
    ("leads-es-base", "list-selling", "list-selling.leads", "Más clientes",
     "Vendemos bases de datos de empresas con correos actualizados: más de 300.000 contactos por sector y "
     "provincia.", "html"),
    # illegal goods: jammers
    ("jammer-en-drone", "illegal-goods", "illegal-goods.jammers", "Protect your privacy",
     "Handheld drone jammer with 8 antennas, 500 metre range. In stock, ships in 48 hours.", "html"),
    ("jammer-fr-brouilleur", "illegal-goods", "illegal-goods.jammers", "Promo",
     "Brouilleur GPS et téléphone portable pour voiture, livraison rapide et discrète.", "plain"),
    ("jammer-es-inhibidor", "illegal-goods", "illegal-goods.jammers", "Oferta",
     "Inhibidor de frecuencias para móviles y wifi, envío 24h. Mejor precio garantizado.", "qp"),
    # hate: calls to violence
    ("hate-en-torches", "hate", "hate.attack", "This weekend",
     "They took our town. Friday night we go to the mosque. Bring petrol and crowbars and make the Muslims "
     "pay.", "plain"),
    ("hate-de-fluchtlinge", "hate", "hate.attack", "Es reicht",
     "Die Flüchtlinge raus aus unserem Dorf! Samstag greifen wir ihre Unterkünfte an.", "qp"),
    ("hate-es-inmigrantes", "hate", "hate.attack", "Basta ya",
     "Fuera los inmigrantes de nuestro barrio. El sábado quememos sus tiendas.", "html"),
    # tobacco
    ("tob-en-humidor", "tobacco", "tobacco.shop", "New in the humidor",
     "Just landed: Nicaraguan cigars in boxes of 20, and three new pipe tobacco blends. Members get 10% off.",
     "html"),
    ("tob-de-tabak", "tobacco", "tobacco.shop", "Winterangebote",
     "Drehtabak und Zigarillos im Angebot – jetzt im Onlineshop bestellen, Versand ab 50 Euro kostenlos.",
     "plain"),
    ("tob-fr-cartouches", "tobacco", "tobacco.shop", "Prix imbattables",
     "Cartouches de cigarettes et tabac à rouler à petit prix, livraison en 72 heures partout en France.",
     "alternative"),
    # cannabis
    ("can-en-strains", "cannabis", "cannabis.seeds", "New genetics just dropped",
     "Five new autoflowering strains testing at 24% THC. Grab 10 feminized seeds and get 3 free.", "qp"),
    ("can-fr-cbd", "cannabis", "cannabis.seeds", "Nouveautés",
     "Fleurs de CBD et résine à -30 %, livraison discrète en 48h partout en France.", "html"),
    ("can-es-semillas", "cannabis", "cannabis.seeds", "Cultiva en casa",
     "Semillas feminizadas de marihuana con envío discreto y gratis a partir de 30 euros.", "plain"),
    # fireworks
    ("fw-en-bonfire", "fireworks", "fireworks.fireworks", "Bonfire Night is coming",
     "Stock up for Bonfire Night: rockets, roman candles and cakes, 3 for 2 on all assortments. Order by "
     "Thursday for delivery.", "html"),
    ("fw-fr-feux", "fireworks", "fireworks.fireworks", "Nouvel An",
     "Feux d'artifice pour le Nouvel An : précommandez en ligne et retirez en magasin.", "plain"),
    ("fw-es-petardos", "fireworks", "fireworks.fireworks", "Fallas",
     "Petardos, tracas y cohetes al mejor precio. Compra online con envío a domicilio.", "qp"),
    # piracy
    ("pir-en-autocad", "piracy", "piracy.activation", "Pro tools, one price",
     "AutoCAD 2025 and Revit with permanent activation, one-time payment of 39 dollars. Download link by "
     "email.", "plain"),
    ("pir-de-office", "piracy", "piracy.activation", "Office für immer",
     "Microsoft Office 2024 Vollversion mit lebenslanger Lizenz für 19 Euro, Sofort-Download.", "html"),
    ("pir-es-photoshop", "piracy", "piracy.activation", "Oferta única",
     "Photoshop e Illustrator versión completa con activación de por vida. Pago único.", "qp"),
]

MORE_NEGATIVES = [
    ("gym-stamina", "enhancement,supplements", "Boost your stamina this winter",
     "New timetable from Monday: spin at 7, HIIT on Wednesday, rowing on Friday. Our coaches will help you "
     "boost your stamina this winter.", "html"),
    ("life-drawing", "adult", "Life drawing, spring term",
     "Our life drawing class works from nude models, charcoal and paper provided. Adults only, 12 pounds "
     "a session.", "plain"),
    ("comedy-special", "adult", "Tonight on our channel",
     "Watch live: an uncensored stand-up special, streaming free for members from 9pm.", "qp"),
    ("tennis-singles", "dating", "Club championships",
     "Entries are open for the singles and doubles championships. Meet your opponent at the clubhouse; "
     "matches start Saturday.", "alternative"),
    ("fr-rencontres-auteurs", "dating", "Salon du livre",
     "Rencontres avec les auteurs samedi à la médiathèque : profils des lauréats et séance de dédicaces.",
     "plain"),
    ("stew-recipe", "alcohol", "Sunday stew",
     "Brown the beef, add a bottle of red wine and a litre of stock, and simmer for three hours.", "html"),
    ("beer-prices-news", "alcohol", "Market brief",
     "Beer prices rose 8% this year as barley costs climbed, the brewers' association said.", "qp"),
    ("clinic-ed", "enhancement", "Men's health evening",
     "Erectile dysfunction can be an early sign of heart disease. Our men's health evening explains when "
     "to see your GP.", "plain"),
    ("solar-news", "list-selling", "Energy weekly",
     "Solar leads the growth in renewables this year; insurance costs for installers fell 4%.", "html"),
    ("crm-leads", "list-selling", "Your pipeline",
     "Your CRM now scores inbound leads automatically. Exclusive to Pro plans from next month.", "qp"),
    ("jammer-blog", "illegal-goods", "Why jamming is dangerous",
     "Signal jamming is illegal in the UK. GPS jammers in cars have disrupted aircraft navigation near "
     "airports, regulators warn.", "plain"),
    ("es-inhibidor-corrosion", "illegal-goods", "Mantenimiento de invierno",
     "Inhibidor de corrosión para radiadores y circuitos de calefacción, envío gratis y el mejor precio.",
     "plain"),
    ("baseball-club", "hate", "Practice moved",
     "Bring your bats and gloves to Saturday practice. The new players from the immigrant community league "
     "join us.", "html"),
    ("riot-news", "hate", "Local news",
     "Police arrested 12 people after immigrant-owned shops were attacked with bats and petrol on Friday. "
     "The council condemned the violence.", "qp"),
    ("quit-smoking", "tobacco", "Stop smoking service",
     "Stop buying cigarettes this January: our stop smoking service offers free nicotine patches and weekly "
     "support.", "plain"),
    ("cigar-museum", "tobacco", "Museum talk",
     "A talk on Cuban cigars and the tobacco trade, with boxes from our collection on display.", "html"),
    ("de-cannabis-news", "cannabis", "Was jetzt gilt",
     "Seit April ist der Anbau von drei Cannabispflanzen erlaubt. Samen dürfen aus der EU bezogen werden; "
     "Jugendschutz bleibt Pflicht.", "qp"),
    ("hemp-rope", "cannabis", "Garden twine",
     "Hemp rope and jute twine for the garden, now in stock.", "plain"),
    ("fw-display", "fireworks", "New Year on the river",
     "Our town's New Year fireworks display starts at midnight on the river. Free entry, no need to book.",
     "html"),
    ("de-silvester-verbot", "fireworks", "Silvester in der Altstadt",
     "In der Altstadt gilt an Silvester ein Verbot für Raketen und Böller. Das städtische Feuerwerk beginnt "
     "um Mitternacht.", "plain"),
    ("adobe-renewal", "piracy", "Your plan renews soon",
     "Your Adobe Creative Cloud subscription renews on 3 March. Manage your plan in your account.", "qp"),
    ("cracked-security", "piracy", "Threat report",
     "Our security researchers found infostealers bundled with cracked Adobe installers that promise "
     "lifetime activation.", "html"),
    ("wine-pairing-fr", "alcohol", "Dîner accord mets et vins",
     "Notre dîner accord mets et vins : cinq plats, réservation conseillée, 65 euros par personne.",
     "alternative"),
]
