"""Integers from text that users and operators write: ASCII decimal only, bounded in length.

``int()`` alone also takes other scripts' digits ("٧"), "_" separators, "+",
surrounding spaces and any length; none of those is a number in a template,
a configuration file or an argument here.
"""


def decimal(text, signed=False, digits=20):
    """``text`` as an int when it is ASCII decimal digits (a leading "-" when ``signed``),
    at most ``digits`` of them; else None."""
    body = text[1:] if signed and text.startswith("-") else text
    if not (body.isascii() and body.isdigit() and len(body) <= digits):
        return None
    return int(text, 10)
