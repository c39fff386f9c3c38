"""Rules across fields, which JSON Schema cannot state well: schemathesis
would draw "valid" requests that the server rightly refuses (400). Each
rule here is also in its operation's description in the document; a
positive case that breaks one is not generated, and negative cases are
left as they are.
"""

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
    """A schedule's ranges run upwards (`5-10`, not `10-5`)."""
    trigger = body.get("trigger") if isinstance(body, dict) else None
    cron = trigger.get("cron") if isinstance(trigger, dict) else None
    return not isinstance(cron, str) or _ranges_upwards(cron)


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
    "POST /v1/messages": lambda case: _text(case.body),
    "POST /v1/messages/quote": lambda case: _text(case.body),
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
