"""Rules across fields, which JSON Schema cannot state well: schemathesis
would draw "valid" requests that the server rightly refuses (400). Each
rule here is also in its operation's description in the document; a
positive case that breaks one is not generated, and negative cases are
left as they are.
"""

import re

import schemathesis


def _blank(value):
    return not isinstance(value, str) or not value.strip()


def _person(fields):
    """A person is named by a phone or an e-mail address (a blank one is none)."""
    fields = fields if isinstance(fields, dict) else {}
    return not (_blank(fields.get("phone")) and _blank(fields.get("email")))


def _ordered(body, start, end, strict):
    """`start` is before `end` (or not after it) when both are given."""
    if not isinstance(body, dict):
        return True
    a, b = body.get(start), body.get(end)
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
        return True
    return a < b if strict else a <= b


def _quiet_hours(body):
    """Quiet hours start and end at two different times."""
    quiet = body.get("quiet_hours") if isinstance(body, dict) else None
    return not isinstance(quiet, dict) or quiet.get("start") != quiet.get("end")


def _segment(body):
    """A segment lists members or has a rule; its window does not run backwards."""
    if not isinstance(body, dict):
        return True
    listed = bool(body.get("members")) or body.get("rule") is not None
    return listed and _ordered(body, "from_ms", "to_ms", False)


def _text(body):
    """A message has either a body that is not blank or a template to render."""
    if not isinstance(body, dict):
        return True
    has_body, has_template = body.get("body") is not None, body.get("template") is not None
    if has_body == has_template:
        return False
    return not _blank(body.get("body") if has_body else body.get("template"))


def _shown(text):
    """What is left of a subject once control characters are dropped and
    white space is one space: it must not be blank."""
    if not isinstance(text, str):
        return False
    kept = "".join(c for c in text if c in "\t\n" or not (ord(c) < 32 or 127 <= ord(c) < 160))
    kept = "".join(c for c in kept if not ("\u202a" <= c <= "\u202e" or "\u2066" <= c <= "\u2069"))
    return bool(kept.strip()) and len(kept.strip()) <= 500


def _email(body):
    """An e-mail (channel `email`) has a subject and addresses; other
    channels have phone numbers and neither a subject nor HTML."""
    if not isinstance(body, dict):
        return True
    to = body.get("to") or []
    if body.get("channel") == "email":
        return _shown(body.get("subject")) and all(isinstance(a, str) and "@" in a for a in to)
    return body.get("subject") is None and body.get("html") is None and all(
        isinstance(a, str) and "@" not in a for a in to
    )


def _message(body):
    return _text(body) and _email(body)


def _mailbox(text):
    """An address lettre takes, or a plain name and one in angle brackets."""
    if not isinstance(text, str):
        return False
    address = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+"
    return re.fullmatch(rf"{address}|[A-Za-z0-9 ]*<{address}>", text) is not None


def _provider(body):
    """An SMTP provider names its host, its From as an address, and a
    username with a password or neither."""
    if not isinstance(body, dict) or body.get("kind") != "smtp":
        return True
    host = body.get("host")
    return (
        isinstance(host, str)
        and re.fullmatch(r"[A-Za-z0-9.-]{1,253}", host) is not None
        and _mailbox(body.get("from"))
        and (body.get("reply_to") is None or _mailbox(body.get("reply_to")))
        and (body.get("username") is None) == (body.get("password") is None)
    )


def _prices(body):
    """An e-mail's price is per e-mail: it has no prefix."""
    prices = body.get("prices") if isinstance(body, dict) else None
    return not isinstance(prices, list) or all(
        not isinstance(p, dict) or p.get("channel") != "email" or not p.get("prefix")
        for p in prices
    )


def _words(body):
    """A word is in only one of the stop, start and help lists (in upper case)."""
    if not isinstance(body, dict):
        return True
    words = [
        w.strip().upper()
        for key in ("stop_words", "start_words", "help_words")
        for w in (body.get(key) or [])
        if isinstance(w, str)
    ]
    return len(words) == len(set(words))


def _account(body):
    """A subuser, and only a subuser, has a parent, which must exist: the
    cases with either are left to the end-to-end tests."""
    if not isinstance(body, dict):
        return True
    return body.get("level") in (None, "admin", "user") and body.get("parent") is None


def _ranges_upwards(cron):
    for field in cron.split():
        for part in field.split(","):
            lo_hi = part.split("/")[0].split("-")
            if len(lo_hi) == 2 and lo_hi[0].isdigit() and lo_hi[1].isdigit():
                if int(lo_hi[0]) > int(lo_hi[1]):
                    return False
    return True


def _campaign(body):
    """A schedule's ranges run upwards (`5-10`, not `10-5`); an e-mail
    campaign, and only one, has a subject."""
    if not isinstance(body, dict):
        return True
    trigger = body.get("trigger")
    cron = trigger.get("cron") if isinstance(trigger, dict) else None
    email = body.get("channel") == "email"
    subject = body.get("subject")
    return (not isinstance(cron, str) or _ranges_upwards(cron)) and (
        _shown(subject) if email else subject is None
    )


def _unsubscribe(body):
    """A person is named; an e-mail subscription needs their e-mail, a text
    one their phone."""
    if not _person(body):
        return False
    needs = {
        s.get("channel")
        for s in (body.get("subscriptions") or [])
        if isinstance(s, dict)
    }
    return ("EMAIL" not in needs or not _blank(body.get("email"))) and (
        "TEXT" not in needs or not _blank(body.get("phone"))
    )


RULES = {
    "GET /v1/audiences/subscriptions": lambda case: _person(case.query),
    "POST /v1/audiences/subscriptions": lambda case: _person(case.body),
    "POST /v1/audiences/subscriptions/unsubscribe": lambda case: _unsubscribe(case.body),
    "POST /v1/audiences/segments": lambda case: _segment(case.body),
    "PUT /v1/audiences/segments/{id}": lambda case: _segment(case.body),
    "POST /v1/messages": lambda case: _message(case.body),
    "POST /v1/messages/quote": lambda case: _message(case.body),
    "PUT /v1/providers/{name}": lambda case: _provider(case.body),
    "PUT /v1/messaging/prices": lambda case: _prices(case.body),
    "PUT /v1/gateway/settings": lambda case: _words(case.body),
    "POST /v1/gateway/accounts": lambda case: _account(case.body),
    "PUT /v1/campaigns/{id}": lambda case: _campaign(case.body),
    "PUT /v1/audiences/settings": lambda case: _quiet_hours(case.body),
    "PUT /v1/goods/{id}": lambda case: _ordered(
        case.body, "active_from_ms", "active_until_ms", True
    ),
}


@schemathesis.hook
def filter_case(ctx, case):
    rule = RULES.get(ctx.operation.label) if ctx.operation is not None else None
    meta = case.meta
    positive = meta is not None and meta.generation.mode.is_positive
    return rule is None or not positive or rule(case)
