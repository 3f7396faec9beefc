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

/// Appends one event to a search's result stream, at most once per slot.
///
/// `KEYS[1]` result stream, `KEYS[2]` state hash; `ARGV[1]` slot (see
/// `EventKind::slot`), `ARGV[2]` event JSON, `ARGV[3]` TTL seconds, `ARGV[4]` the
/// events channel, `ARGV[5]` the search id, and optionally `ARGV[6]` the tally
/// (see [`Tally`](crate::Tally)): for a `result`, its offer count, added to
/// the state hash's `answers` and `offers`; for a terminal event, the
/// `answers:offers` the writer based it on (empty for none); and optionally
/// `ARGV[7]` `SPUBLISH` to announce on a sharded channel (on a cluster, the
/// search's own channel in its slot) rather than with PUBLISH.
///
/// Returns the new entry id, or nil when the slot is taken or the search already
/// has its terminal event. This is what makes re-processing after a crash, or a
/// timeout racing a late provider, invisible to clients: every supplier's offers
/// appear once and there is exactly one terminal event. A terminal event whose
/// tally differs from the results actually written (another attempt added one
/// meanwhile) is refused with the error `STALE_TALLY <answers>:<offers>`, so a
/// `completed` total always equals the offers before it. The XADD, both EXPIREs
/// and the PUBLISH nudge happen together or not at all.
pub const APPEND_EVENT: &str = r"
if redis.call('HEXISTS', KEYS[2], 'terminal') == 1 or redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then
  return false
end
local tally = ARGV[6] or ''
if tally ~= '' and ARGV[1] == 'terminal' then
  local have = (redis.call('HGET', KEYS[2], 'answers') or '0') .. ':' .. (redis.call('HGET', KEYS[2], 'offers') or '0')
  if have ~= tally then return redis.error_reply('STALE_TALLY ' .. have) end
end
local id = redis.call('XADD', KEYS[1], '*', 'data', ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], id)
if tally ~= '' and ARGV[1] ~= 'terminal' then
  redis.call('HINCRBY', KEYS[2], 'answers', 1)
  redis.call('HINCRBY', KEYS[2], 'offers', tonumber(tally))
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
redis.call(ARGV[7] == 'SPUBLISH' and 'SPUBLISH' or 'PUBLISH', ARGV[4], ARGV[5])
return id
";

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
pub const ATTACH_READER: &str = r"
local function beyond()
  return ARGV[2] ~= '' and #redis.call('XRANGE', KEYS[2], ARGV[2], '+', 'COUNT', 1) == 0
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  if redis.call('EXISTS', KEYS[2]) == 0 then return {0} end
  if beyond() then return {3} end
  return {1, '', '', 0}
end
local terminal = redis.call('HGET', KEYS[1], 'terminal') or ''
if terminal ~= '' and redis.call('EXISTS', KEYS[2]) == 0 then return {2, terminal} end
if beyond() then return {3} end
if redis.call('HSETNX', KEYS[1], 'reader:' .. ARGV[1], 1) == 1 then
  redis.call('HINCRBY', KEYS[1], 'readers', 1)
end
return {1, redis.call('HGET', KEYS[1], 'requested_at') or '', terminal, 1}
";

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

    /// Redis commands the scripts call, and syntax they pass to them: the
    /// literals that are not names of this project's layout.
    const COMMANDS_AND_SYNTAX: [&str; 20] = [
        "HEXISTS", "HGET", "HSET", "HSETNX", "HINCRBY", "HDEL", "DEL", "EXISTS", "EXPIRE", "XADD",
        "XRANGE", "COUNT", "PUBLISH", "SPUBLISH",
        // XADD's auto id, XRANGE's open end, an unset value.
        "*", "+", "",
        // The detach flag for a reader that saw the terminal event; an unset
        // count and the separator of a tally (see `Tally`).
        "1", "0", ":",
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
        assert_eq!(
            layout_literals(APPEND_EVENT),
            [
                STATE_TERMINAL,
                STATE_TERMINAL,
                STATE_ANSWERS,
                STATE_OFFERS,
                &stale,
                DATA_FIELD,
                STATE_TERMINAL,
                STATE_ANSWERS,
                STATE_OFFERS,
            ]
        );
        assert_eq!(
            layout_literals(ATTACH_READER),
            [
                STATE_TERMINAL,
                STATE_READER_PREFIX,
                STATE_READERS,
                STATE_REQUESTED_AT
            ]
        );
        assert_eq!(
            layout_literals(DETACH_READER),
            [STATE_READER_PREFIX, STATE_READERS, STATE_READERS]
        );
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
