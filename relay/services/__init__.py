"""What recipients do to the relay: sign up and confirm (opt-in), unsubscribe (HTTP or mail)."""
