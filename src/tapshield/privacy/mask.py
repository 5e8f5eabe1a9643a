"""Display forms of identifiers: enough for a person to recognise, not to reuse.

Masks are for screens and messages read by people (an operator checking a
notice went to the right customer, a customer recognising their own number).
They are not tokens: two customers can share a mask, so never join on them.
"""

from __future__ import annotations

from tapshield.errors import mask_value


def mask_phone(phone: str) -> str:
    """``13812345678`` -> ``138****5678``; ``+86 138 1234 5678`` -> ``+86 138****5678``."""
    digits = "".join(c for c in phone if c.isdigit())
    if len(digits) < 8:
        return "*" * len(digits)
    national, cc = (digits[-11:], digits[:-11]) if len(digits) > 11 else (digits, "")
    head = f"+{cc} " if cc else ""
    keep = max(0, min(3, len(national) - 8))  # at least four digits always hidden
    return f"{head}{national[:keep]}{'*' * (len(national) - keep - 4)}{national[-4:]}"


def mask_email(email: str) -> str:
    """``zhang.wei@example.com`` -> ``z***@example.com`` (the domain stays: it says which
    provider a notice went through)."""
    local, at, domain = email.rpartition("@")
    if not at:
        return mask_id(email)
    return f"{local[:1]}***@{domain}" if local else f"***@{domain}"


def mask_id(value: str) -> str:
    """``u142424`` -> ``u1***24``: first two and last two characters of longer ids."""
    return mask_value(value)
