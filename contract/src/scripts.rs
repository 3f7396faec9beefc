//! Lua scripts run inside Redis, where a check and the write it guards must be
//! one atomic step. Both services load them by content (EVALSHA with fallback).
//!
//! The scripts spell the state hash's fields and the result stream's `data`
//! field as literals; the tests below prove each literal equals its constant
//! in [`crate::keys`], so the two cannot drift apart.

/// The error code with which [`APPEND_EVENT`] refuses a terminal event based on
/// a stale tally; the reply's detail is the tally now, `<answers>:<offers>`.
pub const STALE_TALLY: &str = "STALE_TALLY";

/// The first element of [`ATTACH_READER`]'s reply: what the reader will find.
pub mod attach {
    /// `{0}`: no such search.
    pub const UNKNOWN: i64 = 0;
    /// `{1, requested_at, terminal_id, counted}`: the events can be read.
    pub const OPEN: i64 = 1;
    /// `{2, terminal_id}`: the search finished and its stream is gone.
    pub const GONE: i64 = 2;
    /// `{3}`: the resume point lies beyond the stream's last entry.
    pub const BEYOND: i64 = 3;
}

/// The Lua both append scripts share, so the rules of one append cannot
/// drift apart between them.
///
/// `append(slot, data, tally)` writes one event unless its slot is taken or
/// the search has its terminal event (then it returns false); a terminal event
/// with a tally that differs from the state hash's `answers:offers` is refused
/// with `false, <tally now>`; it returns the new entry id otherwise. Before
/// its call's first XADD it notes the stream's last entry (`previous`), and it
/// keeps every entry it writes (`written`) for the nudge.
///
/// `announce(ttl, channel, search_id, publish)` refreshes both keys' TTL and
/// sends the nudge
/// (see [`crate::nudge`]), once per script call however many events it wrote.
/// The nudge carries the written entries when their data is at most [`NUDGE_DATA_LIMIT`](crate::nudge::NUDGE_DATA_LIMIT) bytes
/// in all; otherwise it is the bare search id, and subscribers read the stream.
///
/// `last_entry()` asks the stream itself (`XREVRANGE … COUNT 1`, `-` when it
/// is empty) rather than keeping the id anywhere: whoever wrote the stream
/// before, the previous entry it names is the real one, and a wrong one would
/// let a subscriber skip the entries in between.
macro_rules! append_functions {
    () => {
        r"
local previous, written = nil, {}
local function last_entry()
  local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)[1]
  return last and last[1] or '-'
end
local function append(slot, data, tally)
  if redis.call('HEXISTS', KEYS[2], 'terminal') == 1 or redis.call('HEXISTS', KEYS[2], slot) == 1 then
    return false
  end
  if tally ~= '' and slot == 'terminal' then
    local have = (redis.call('HGET', KEYS[2], 'answers') or '0') .. ':' .. (redis.call('HGET', KEYS[2], 'offers') or '0')
    if have ~= tally then return false, have end
  end
  if previous == nil then previous = last_entry() end
  local id = redis.call('XADD', KEYS[1], '*', 'data', data)
  written[#written + 1] = {id, data}
  redis.call('HSET', KEYS[2], slot, id)
  if tally ~= '' and slot ~= 'terminal' then
    redis.call('HINCRBY', KEYS[2], 'answers', 1)
    redis.call('HINCRBY', KEYS[2], 'offers', tonumber(tally))
  end
  return id
end
local function announce(ttl, channel, search_id, publish)
  redis.call('EXPIRE', KEYS[1], ttl)
  redis.call('EXPIRE', KEYS[2], ttl)
  local size = 0
  for _, entry in ipairs(written) do size = size + #entry[2] end
  local message = search_id
  if size <= 16384 then
    local parts = {search_id, ' ', previous}
    for _, entry in ipairs(written) do
      parts[#parts + 1] = '\n' .. entry[1] .. ' ' .. #entry[2] .. '\n'
      parts[#parts + 1] = entry[2]
    end
    message = table.concat(parts)
  end
  redis.call(publish == 'SPUBLISH' and 'SPUBLISH' or 'PUBLISH', channel, message)
end
"
    };
}

/// Appends one event to a search's result stream, at most once per slot.
///
/// `KEYS[1]` result stream, `KEYS[2]` state hash; `ARGV[1]` slot (see
/// `EventKind::slot`), `ARGV[2]` event JSON, `ARGV[3]` TTL seconds, `ARGV[4]` the
/// events channel, `ARGV[5]` the search id, and optionally `ARGV[6]` the tally
/// (see [`Tally`](crate::Tally)): for a `result`, its offer count, added to
/// the state hash's `answers` and `offers`; for a terminal event, the
/// `answers:offers` the writer based it on (empty for none); and optionally
/// `ARGV[7]` `SPUBLISH` to announce on a sharded channel (on a cluster, the
/// search's own channel in its slot) rather than with PUBLISH. The
/// announcement is a [nudge](crate::nudge) carrying the new entry.
///
/// Returns the new entry id, or nil when the slot is taken or the search already
/// has its terminal event. This is what makes re-processing after a crash, or a
/// timeout racing a late provider, invisible to clients: every supplier's offers
/// appear once and there is exactly one terminal event. A terminal event whose
/// tally differs from the results actually written (another attempt added one
/// meanwhile) is refused with the error `STALE_TALLY <answers>:<offers>`, so a
/// `completed` total always equals the offers before it. The XADD, the state
/// hash updates, both EXPIREs and the nudge happen together or not at all.
pub const APPEND_EVENT: &str = concat!(
    append_functions!(),
    r"
local id, stale = append(ARGV[1], ARGV[2], ARGV[6] or '')
if stale then return redis.error_reply('STALE_TALLY ' .. stale) end
if not id then return false end
announce(ARGV[3], ARGV[4], ARGV[5], ARGV[7])
return id
"
);

/// Appends several events of one search in order, each by the rules of
/// [`APPEND_EVENT`], with one TTL refresh and one nudge for all of them: what
/// a provider has ready at once costs one round trip and wakes each
/// main-service once, with every entry written in that one nudge.
///
/// `KEYS` as for [`APPEND_EVENT`]; `ARGV[1]` TTL seconds, `ARGV[2]` the events
/// channel, `ARGV[3]` the search id, `ARGV[4]` `SPUBLISH` or `PUBLISH`, then per
/// event three arguments from `ARGV[5]` on: slot, event JSON and tally (empty
/// for none). Returns one element per event: its new entry id, `0` when it was
/// skipped (slot taken, or the search already ended), or `{<answers>:<offers>}`
/// when a terminal event's tally was stale. The keys' TTL and the nudge are
/// refreshed and sent only if at least one event was written.
pub const APPEND_EVENTS: &str = concat!(
    append_functions!(),
    r"
local replies, written = {}, false
for i = 5, #ARGV, 3 do
  local id, stale = append(ARGV[i], ARGV[i + 1], ARGV[i + 2])
  if stale then
    replies[#replies + 1] = {stale}
  elseif id then
    replies[#replies + 1] = id
    written = true
  else
    replies[#replies + 1] = 0
  end
end
if written then announce(ARGV[1], ARGV[2], ARGV[3], ARGV[4]) end
return replies
"
);

/// The Lua [`ATTACH_READER`] and [`LOOK_UP_SEARCH`] share: `look_up()`
/// returns what a reader of the search will find, in [`ATTACH_READER`]'s reply
/// shape with `counted` 0, and registers nothing; so a `HEAD` answers exactly
/// what a `GET` would.
macro_rules! look_up_function {
    () => {
        r"
local function beyond()
  return ARGV[2] ~= '' and #redis.call('XRANGE', KEYS[2], ARGV[2], '+', 'COUNT', 1) == 0
end
local function look_up()
  if redis.call('EXISTS', KEYS[1]) == 0 then
    if redis.call('EXISTS', KEYS[2]) == 0 then return {0} end
    if beyond() then return {3} end
    return {1, '', '', 0}
  end
  local terminal = redis.call('HGET', KEYS[1], 'terminal') or ''
  if terminal ~= '' and redis.call('EXISTS', KEYS[2]) == 0 then return {2, terminal} end
  if beyond() then return {3} end
  return {1, redis.call('HGET', KEYS[1], 'requested_at') or '', terminal, 0}
end
"
    };
}

/// Registers an SSE reader of a search and says what the reader will find.
///
/// `KEYS[1]` state hash, `KEYS[2]` result stream; `ARGV[1]` a token naming this
/// reader, new for every attach; `ARGV[2]` the client's resume point (an entry
/// id without leading zeros) or empty. Returns `{0}` for an unknown search,
/// `{2, terminal_id}` for a finished search whose stream is gone, `{3}` when the
/// resume point lies beyond the stream's last entry (no entry is at or after
/// it: the client cannot have received it from this search, and counting it
/// could let a reader that never saw the terminal event delete the stream), and
/// otherwise `{1, requested_at, terminal_id, counted}` (empty strings when unset).
/// `counted` is 1 when the reader was registered: `readers` went up by one and
/// the field `reader:<token>` records it, so [`DETACH_READER`] can tell a
/// registered reader from one that never was. It is 0 when the state hash is
/// missing (a result stream without one): a missing hash is never created here,
/// so a stray reader cannot leave a key without TTL behind, and there is
/// nothing to undo. Running it twice with one token counts the reader once.
pub const ATTACH_READER: &str = concat!(
    look_up_function!(),
    r"
local found = look_up()
if found[1] ~= 1 or redis.call('EXISTS', KEYS[1]) == 0 then return found end
if redis.call('HSETNX', KEYS[1], 'reader:' .. ARGV[1], 1) == 1 then
  redis.call('HINCRBY', KEYS[1], 'readers', 1)
end
found[4] = 1
return found
"
);

/// What [`ATTACH_READER`] would answer, without registering a reader: the
/// lookup of a `HEAD` on a search's stream. `KEYS` as for [`ATTACH_READER`];
/// `ARGV[1]` unused (empty), `ARGV[2]` the resume point or empty. Declared
/// `no-writes`, so Redis runs it while it refuses writes, as it does `GET`'s
/// reads.
pub const LOOK_UP_SEARCH: &str = concat!(
    "#!lua flags=no-writes\n",
    look_up_function!(),
    "return look_up()\n"
);

/// Unregisters an SSE reader and deletes the result stream if that reader saw
/// the terminal event and was the last one.
///
/// `KEYS[1]` state hash, `KEYS[2]` result stream; `ARGV[1]` the reader's token
/// as given to [`ATTACH_READER`], `ARGV[2]` `1` if the reader received the
/// terminal event. Returns 1 if the stream was deleted. Only a registered token
/// counts down, and only once: detaching again, or detaching a token whose
/// attach never ran, changes nothing. So a detach whose reply was lost can be
/// retried, and an attach whose reply was lost can be undone whether or not it
/// ran. A reader that left mid-search (`ARGV[2]` `0`) never deletes: it may come
/// back with Last-Event-ID.
pub const DETACH_READER: &str = r"
if redis.call('HDEL', KEYS[1], 'reader:' .. ARGV[1]) == 0 then return 0 end
local left = redis.call('HINCRBY', KEYS[1], 'readers', -1)
if ARGV[2] == '1' and left <= 0 then
  redis.call('HSET', KEYS[1], 'readers', 0)
  return redis.call('DEL', KEYS[2])
end
return 0
";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{
        DATA_FIELD, STATE_ANSWERS, STATE_OFFERS, STATE_READER_PREFIX, STATE_READERS,
        STATE_REQUESTED_AT, STATE_TERMINAL,
    };
    use crate::nudge::NUDGE_DATA_LIMIT;

    /// Redis commands the scripts call, and syntax they pass to them: the
    /// literals that are not names of this project's layout.
    const COMMANDS_AND_SYNTAX: [&str; 24] = [
        "HEXISTS",
        "HGET",
        "HSET",
        "HSETNX",
        "HINCRBY",
        "HDEL",
        "DEL",
        "EXISTS",
        "EXPIRE",
        "XADD",
        "XRANGE",
        "XREVRANGE",
        "COUNT",
        "PUBLISH",
        "SPUBLISH",
        // XADD's auto id, a range's open ends, an unset value.
        "*",
        "+",
        "-",
        "",
        // The detach flag for a reader that saw the terminal event; an unset
        // count and the separator of a tally (see `Tally`).
        "1",
        "0",
        ":",
        // A nudge's separators (see `crate::nudge`; its "no previous entry" is
        // the range's open start above), the newline as the script spells it.
        " ",
        "\\n",
    ];

    /// Every single-quoted literal in `script`.
    fn literals(script: &str) -> Vec<&str> {
        script.split('\'').skip(1).step_by(2).collect()
    }

    fn layout_literals(script: &str) -> Vec<String> {
        literals(script)
            .into_iter()
            .filter(|l| !COMMANDS_AND_SYNTAX.contains(l))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn every_field_a_script_spells_is_its_constant() {
        // The terminal slot's name is the state hash field that records it.
        let stale = format!("{STALE_TALLY} ");
        let append = [
            STATE_TERMINAL,
            STATE_TERMINAL,
            STATE_ANSWERS,
            STATE_OFFERS,
            DATA_FIELD,
            STATE_TERMINAL,
            STATE_ANSWERS,
            STATE_OFFERS,
        ];
        assert_eq!(
            layout_literals(APPEND_EVENT),
            [&append[..], &[&stale]].concat()
        );
        assert_eq!(layout_literals(APPEND_EVENTS), append);
        assert_eq!(
            layout_literals(ATTACH_READER),
            [
                STATE_TERMINAL,
                STATE_REQUESTED_AT,
                STATE_READER_PREFIX,
                STATE_READERS,
            ]
        );
        assert_eq!(
            layout_literals(LOOK_UP_SEARCH),
            [STATE_TERMINAL, STATE_REQUESTED_AT]
        );
        assert_eq!(
            layout_literals(DETACH_READER),
            [STATE_READER_PREFIX, STATE_READERS, STATE_READERS]
        );
    }

    #[test]
    fn the_nudge_limit_is_the_one_the_scripts_apply() {
        let check = format!("size <= {NUDGE_DATA_LIMIT} then");
        for script in [APPEND_EVENT, APPEND_EVENTS] {
            assert_eq!(script.matches(&check).count(), 1, "{check}");
            assert_eq!(script.matches("size <= ").count(), 1);
        }
    }

    #[test]
    fn the_attach_statuses_are_what_the_script_returns() {
        for (status, reply) in [
            (attach::UNKNOWN, "return {0}"),
            (attach::BEYOND, "return {3}"),
            (attach::GONE, "return {2, terminal}"),
            (attach::OPEN, "return {1, "),
        ] {
            assert!(ATTACH_READER.contains(reply), "{reply}");
            assert!(reply.starts_with(&format!("return {{{status}")), "{status}");
        }
    }
}
