//! What Redis says about itself (`INFO clients`, `INFO cpu`, `INFO
//! commandstats`), read over a connection of the load generator's own.

use std::collections::BTreeMap;

use redis::aio::MultiplexedConnection;

/// Commands the load generator itself sends while streams are held idle
/// (sampling and its own connection set-up): left out when counting what
/// main-service sends.
pub const OWN_COMMANDS: [&str; 3] = ["info", "client", "hello"];

/// The value of `name` in the text of an `INFO` reply (`name:value` lines).
pub fn info_field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}

/// `connected_clients` from an `INFO clients` reply.
pub fn parse_connected_clients(info: &str) -> Option<u64> {
    info_field(info, "connected_clients")?.parse().ok()
}

/// `used_cpu_sys + used_cpu_user` (seconds) from an `INFO cpu` reply.
pub fn parse_used_cpu(info: &str) -> Option<f64> {
    let sys: f64 = info_field(info, "used_cpu_sys")?.parse().ok()?;
    let user: f64 = info_field(info, "used_cpu_user")?.parse().ok()?;
    Some(sys + user)
}

/// Redis clients connected right now, this load generator's own included.
pub async fn connected_clients(conn: &mut MultiplexedConnection) -> redis::RedisResult<u64> {
    let info: String = redis::cmd("INFO").arg("clients").query_async(conn).await?;
    parse_connected_clients(&info).ok_or_else(|| unparsable("INFO clients"))
}

/// CPU seconds the Redis server has used since it started.
pub async fn used_cpu(conn: &mut MultiplexedConnection) -> redis::RedisResult<f64> {
    let info: String = redis::cmd("INFO").arg("cpu").query_async(conn).await?;
    parse_used_cpu(&info).ok_or_else(|| unparsable("INFO cpu"))
}

/// Calls per command (`cmdstat_<name>:calls=<n>,…` lines) from an `INFO
/// commandstats` reply, by lower-case command name (`client|list` for
/// subcommands).
pub fn parse_command_calls(info: &str) -> BTreeMap<String, u64> {
    info.lines()
        .filter_map(|line| {
            let (name, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = stats.strip_prefix("calls=")?.split(',').next()?;
            Some((name.to_owned(), calls.trim().parse().ok()?))
        })
        .collect()
}

/// Calls per command since Redis started (or its stats were reset).
pub async fn command_calls(
    conn: &mut MultiplexedConnection,
) -> redis::RedisResult<BTreeMap<String, u64>> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await?;
    Ok(parse_command_calls(&info))
}

/// The calls made between two [`command_calls`] readings, by command, leaving
/// out [`OWN_COMMANDS`] (a subcommand counts under its command's name) and
/// commands not called.
pub fn calls_between(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .filter(|(name, _)| {
            let command = name.split('|').next().unwrap_or(name);
            !OWN_COMMANDS.contains(&command)
        })
        .map(|(name, &n)| {
            (
                name.clone(),
                n.saturating_sub(before.get(name).copied().unwrap_or(0)),
            )
        })
        .filter(|&(_, n)| n > 0)
        .collect()
}

fn unparsable(what: &'static str) -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::Parse, "unexpected reply", what.to_owned()))
}

/// The TCP port of a Redis client's server, `None` for a Unix socket.
pub fn port_of(client: &redis::Client) -> Option<u16> {
    match client.get_connection_info().addr() {
        redis::ConnectionAddr::Tcp(_, port) => Some(*port),
        redis::ConnectionAddr::TcpTls { port, .. } => Some(*port),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_info_fields() {
        let clients =
            "# Clients\r\nconnected_clients:7\r\ncluster_connections:0\r\nmaxclients:100000\r\n";
        assert_eq!(parse_connected_clients(clients), Some(7));
        let cpu = "# CPU\r\nused_cpu_sys:1.250000\r\nused_cpu_user:2.500000\r\nused_cpu_sys_children:9.000000\r\n";
        assert_eq!(parse_used_cpu(cpu), Some(3.75));
        assert_eq!(info_field(cpu, "used_cpu"), None);
        assert_eq!(parse_used_cpu("# CPU\r\n"), None);
    }

    #[test]
    fn counts_calls_per_command_without_the_load_generators_own() {
        let before = parse_command_calls(
            "# Commandstats\r\ncmdstat_ping:calls=10,usec=5,usec_per_call=0.50,rejected_calls=0,failed_calls=0\r\ncmdstat_info:calls=3,usec=9\r\n",
        );
        assert_eq!(before.get("ping"), Some(&10));
        let after = parse_command_calls(
            "cmdstat_ping:calls=22,usec=9\r\ncmdstat_info:calls=9,usec=9\r\ncmdstat_client|list:calls=2,usec=1\r\ncmdstat_xrange:calls=4,usec=9\r\n",
        );
        let delta = calls_between(&before, &after);
        assert_eq!(
            delta.into_iter().collect::<Vec<_>>(),
            [("ping".to_owned(), 12), ("xrange".to_owned(), 4)]
        );
    }

    #[test]
    fn finds_the_port_of_a_url() {
        let client = redis::Client::open("redis://127.0.0.1:6390").unwrap();
        assert_eq!(port_of(&client), Some(6390));
    }
}
