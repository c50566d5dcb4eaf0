"""Jinja2 templates: the footer (text, HTML) and the pages recipients see."""
