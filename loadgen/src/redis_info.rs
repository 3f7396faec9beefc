//! What Redis says about itself (`INFO clients`, `INFO cpu`), read over a
//! connection of the load generator's own.

use redis::aio::MultiplexedConnection;

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
    fn finds_the_port_of_a_url() {
        let client = redis::Client::open("redis://127.0.0.1:6390").unwrap();
        assert_eq!(port_of(&client), Some(6390));
    }
}
