"""Schemathesis hooks for the API fuzzing run (loaded through SCHEMATHESIS_HOOKS).

Each hook narrows what schemathesis sends for one rule of the API that JSON
Schema cannot express. Nothing here touches responses or checks: every
response is still judged by every check.
"""

import datetime

import schemathesis

# The submission window in days from today (UTC), inclusive, with a day's
# margin at each end so a run across midnight UTC cannot fall outside it.
FIRST_DAY, LAST_DAY = 1, 364


def _is_positive(case):
    meta = case.meta
    return meta is not None and meta.generation.mode.is_positive


@schemathesis.hook
def before_call(context, case, kwargs):
    """Make a schema-valid search also valid for the rules beyond JSON Schema.

    A schema states none of these: `date` must lie from today (UTC) to today +
    365 days, a window that moves every day; `from` must differ from `to` in
    any case; `passengers` must be written as an integer, while JSON Schema
    counts `7.0` as an integer too. A positive case (one schemathesis expects
    to be accepted) gets its date moved into the window, keeping the spread of
    the generated dates, a different `to` when the two codes are equal, and
    `7` for `7.0`. Negative cases are sent as generated. This runs just before
    each call, so it covers every phase, the document's own examples included.
    """
    operation = case.operation
    if operation.method.upper() != "POST" or operation.path != "/api/flights/search":
        return
    body = case.body
    if not _is_positive(case) or not isinstance(body, dict):
        return
    try:
        generated = datetime.date.fromisoformat(body["date"])
    except (KeyError, TypeError, ValueError):
        return
    span = LAST_DAY - FIRST_DAY + 1
    today = datetime.datetime.now(datetime.timezone.utc).date()
    offset = FIRST_DAY + generated.toordinal() % span
    body["date"] = (today + datetime.timedelta(days=offset)).isoformat()
    origin, destination = body.get("from"), body.get("to")
    if isinstance(origin, str) and isinstance(destination, str) and origin.upper() == destination.upper():
        body["to"] = "DPS" if origin.upper() != "DPS" else "CGK"
    passengers = body.get("passengers")
    if isinstance(passengers, float) and passengers.is_integer():
        body["passengers"] = int(passengers)
