//! What the parser knows about commands by name.

/// Redis commands (7.x, plus the 7.4/8.0 hash-field expiry family), upper case, sorted:
/// `sniff` accepts a stream whose first command is one of them.
const KNOWN: &[&str] = &[
    "ACL",
    "APPEND",
    "ASKING",
    "AUTH",
    "BGREWRITEAOF",
    "BGSAVE",
    "BITCOUNT",
    "BITFIELD",
    "BITFIELD_RO",
    "BITOP",
    "BITPOS",
    "BLMOVE",
    "BLMPOP",
    "BLPOP",
    "BRPOP",
    "BRPOPLPUSH",
    "BZMPOP",
    "BZPOPMAX",
    "BZPOPMIN",
    "CLIENT",
    "CLUSTER",
    "COMMAND",
    "CONFIG",
    "COPY",
    "DBSIZE",
    "DEBUG",
    "DECR",
    "DECRBY",
    "DEL",
    "DISCARD",
    "DUMP",
    "ECHO",
    "EVAL",
    "EVALSHA",
    "EVALSHA_RO",
    "EVAL_RO",
    "EXEC",
    "EXISTS",
    "EXPIRE",
    "EXPIREAT",
    "EXPIRETIME",
    "FAILOVER",
    "FCALL",
    "FCALL_RO",
    "FLUSHALL",
    "FLUSHDB",
    "FUNCTION",
    "GEOADD",
    "GEODIST",
    "GEOHASH",
    "GEOPOS",
    "GEORADIUS",
    "GEORADIUSBYMEMBER",
    "GEORADIUSBYMEMBER_RO",
    "GEORADIUS_RO",
    "GEOSEARCH",
    "GEOSEARCHSTORE",
    "GET",
    "GETBIT",
    "GETDEL",
    "GETEX",
    "GETRANGE",
    "GETSET",
    "HDEL",
    "HELLO",
    "HEXISTS",
    "HEXPIRE",
    "HEXPIREAT",
    "HEXPIRETIME",
    "HGET",
    "HGETALL",
    "HGETDEL",
    "HGETEX",
    "HINCRBY",
    "HINCRBYFLOAT",
    "HKEYS",
    "HLEN",
    "HMGET",
    "HMSET",
    "HPERSIST",
    "HPEXPIRE",
    "HPEXPIREAT",
    "HPEXPIRETIME",
    "HPTTL",
    "HRANDFIELD",
    "HSCAN",
    "HSET",
    "HSETEX",
    "HSETNX",
    "HSTRLEN",
    "HTTL",
    "HVALS",
    "INCR",
    "INCRBY",
    "INCRBYFLOAT",
    "INFO",
    "KEYS",
    "LASTSAVE",
    "LATENCY",
    "LCS",
    "LINDEX",
    "LINSERT",
    "LLEN",
    "LMOVE",
    "LMPOP",
    "LOLWUT",
    "LPOP",
    "LPOS",
    "LPUSH",
    "LPUSHX",
    "LRANGE",
    "LREM",
    "LSET",
    "LTRIM",
    "MEMORY",
    "MGET",
    "MIGRATE",
    "MODULE",
    "MONITOR",
    "MOVE",
    "MSET",
    "MSETNX",
    "MULTI",
    "OBJECT",
    "PERSIST",
    "PEXPIRE",
    "PEXPIREAT",
    "PEXPIRETIME",
    "PFADD",
    "PFCOUNT",
    "PFDEBUG",
    "PFMERGE",
    "PFSELFTEST",
    "PING",
    "PSETEX",
    "PSUBSCRIBE",
    "PSYNC",
    "PTTL",
    "PUBLISH",
    "PUBSUB",
    "PUNSUBSCRIBE",
    "QUIT",
    "RANDOMKEY",
    "READONLY",
    "READWRITE",
    "RENAME",
    "RENAMENX",
    "REPLCONF",
    "REPLICAOF",
    "RESET",
    "RESTORE",
    "RESTORE-ASKING",
    "ROLE",
    "RPOP",
    "RPOPLPUSH",
    "RPUSH",
    "RPUSHX",
    "SADD",
    "SAVE",
    "SCAN",
    "SCARD",
    "SCRIPT",
    "SDIFF",
    "SDIFFSTORE",
    "SELECT",
    "SET",
    "SETBIT",
    "SETEX",
    "SETNX",
    "SETRANGE",
    "SHUTDOWN",
    "SINTER",
    "SINTERCARD",
    "SINTERSTORE",
    "SISMEMBER",
    "SLAVEOF",
    "SLOWLOG",
    "SMEMBERS",
    "SMISMEMBER",
    "SMOVE",
    "SORT",
    "SORT_RO",
    "SPOP",
    "SPUBLISH",
    "SRANDMEMBER",
    "SREM",
    "SSCAN",
    "SSUBSCRIBE",
    "STRLEN",
    "SUBSCRIBE",
    "SUBSTR",
    "SUNION",
    "SUNIONSTORE",
    "SUNSUBSCRIBE",
    "SWAPDB",
    "SYNC",
    "TIME",
    "TOUCH",
    "TTL",
    "TYPE",
    "UNLINK",
    "UNSUBSCRIBE",
    "UNWATCH",
    "WAIT",
    "WAITAOF",
    "WATCH",
    "XACK",
    "XADD",
    "XAUTOCLAIM",
    "XCLAIM",
    "XDEL",
    "XGROUP",
    "XINFO",
    "XLEN",
    "XPENDING",
    "XRANGE",
    "XREAD",
    "XREADGROUP",
    "XREVRANGE",
    "XSETID",
    "XTRIM",
    "ZADD",
    "ZCARD",
    "ZCOUNT",
    "ZDIFF",
    "ZDIFFSTORE",
    "ZINCRBY",
    "ZINTER",
    "ZINTERCARD",
    "ZINTERSTORE",
    "ZLEXCOUNT",
    "ZMPOP",
    "ZMSCORE",
    "ZPOPMAX",
    "ZPOPMIN",
    "ZRANDMEMBER",
    "ZRANGE",
    "ZRANGEBYLEX",
    "ZRANGEBYSCORE",
    "ZRANGESTORE",
    "ZRANK",
    "ZREM",
    "ZREMRANGEBYLEX",
    "ZREMRANGEBYRANK",
    "ZREMRANGEBYSCORE",
    "ZREVRANGE",
    "ZREVRANGEBYLEX",
    "ZREVRANGEBYSCORE",
    "ZREVRANK",
    "ZSCAN",
    "ZSCORE",
    "ZUNION",
    "ZUNIONSTORE",
];

/// Commands whose first argument is a subcommand: the operation takes both words.
const CONTAINERS: &[&str] = &[
    "ACL", "CLIENT", "CLUSTER", "COMMAND", "CONFIG", "FUNCTION", "LATENCY", "MEMORY", "MODULE",
    "OBJECT", "PUBSUB", "SCRIPT", "SLOWLOG", "XGROUP", "XINFO",
];

/// Longest name in [`KNOWN`].
pub const LONGEST_KNOWN: usize = 20;

/// `name` (any case) is a known command; `name` is at most [`LONGEST_KNOWN`] bytes.
pub fn is_known(name: &[u8]) -> bool {
    let mut buf = [0u8; LONGEST_KNOWN];
    let Some(up) = upper(name, &mut buf) else {
        return false;
    };
    KNOWN.binary_search(&up).is_ok()
}

/// `prefix` (any case) begins some known command name.
pub fn is_known_prefix(prefix: &[u8]) -> bool {
    let mut buf = [0u8; LONGEST_KNOWN];
    let Some(up) = upper(prefix, &mut buf) else {
        return false;
    };
    KNOWN.iter().any(|k| k.starts_with(up))
}

fn upper<'a>(name: &[u8], buf: &'a mut [u8; LONGEST_KNOWN]) -> Option<&'a str> {
    if name.is_empty() || name.len() > LONGEST_KNOWN {
        return None;
    }
    let out = &mut buf[..name.len()];
    for (o, c) in out.iter_mut().zip(name) {
        *o = c.to_ascii_uppercase();
    }
    std::str::from_utf8(out).ok()
}

/// `MODULE.COMMAND`: a module's command (`JSON.GET`, `FT.SEARCH`, `BF.ADD`), any case.
pub fn is_module_command(name: &[u8]) -> bool {
    let Some(dot) = name.iter().position(|c| *c == b'.') else {
        return false;
    };
    let (module, command) = (&name[..dot], &name[dot + 1..]);
    (1..=16).contains(&module.len())
        && module[0].is_ascii_alphabetic()
        && module.iter().all(u8::is_ascii_alphanumeric)
        && (1..=32).contains(&command.len())
        && command
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

pub fn is_container(name: &str) -> bool {
    CONTAINERS.contains(&name)
}

/// How much of a command's arguments may be shown whatever the configuration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Redact {
    /// As configured.
    #[default]
    No,
    /// Always the sanitized form (the first argument kept, the others `?`): commands
    /// that carry passwords among later arguments.
    Sanitize,
    /// Every argument `?`: credentials from the first one.
    All,
}

pub fn redaction(name: &str, sub: Option<&str>) -> Redact {
    match (name, sub) {
        ("AUTH" | "HELLO", _) => Redact::All,
        ("MIGRATE", _) | ("ACL", Some("SETUSER")) | ("CONFIG", Some("SET")) => Redact::Sanitize,
        _ => Redact::No,
    }
}

/// Handshakes and heartbeats: no span (counted in `not_operations`). redis-py 8 sends
/// CLIENT MAINT_NOTIFICATIONS on every connect (an error on servers before 8.2).
pub fn is_operation(name: &str, sub: Option<&str>) -> bool {
    !matches!(
        (name, sub),
        ("PING" | "HELLO" | "AUTH", _) | ("CLIENT", Some("SETINFO" | "MAINT_NOTIFICATIONS"))
    )
}

/// The pub/sub confirmations and messages, by the name they carry first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PubSub {
    Subscribe,
    Psubscribe,
    Ssubscribe,
    Unsubscribe,
    Punsubscribe,
    Sunsubscribe,
    /// `message`, `pmessage`, `smessage`: never confirmations.
    Message,
}

impl PubSub {
    /// The command whose confirmations these are (`SUBSCRIBE` → `subscribe`).
    pub fn of_command(name: &str) -> Option<PubSub> {
        Some(match name {
            "SUBSCRIBE" => PubSub::Subscribe,
            "PSUBSCRIBE" => PubSub::Psubscribe,
            "SSUBSCRIBE" => PubSub::Ssubscribe,
            "UNSUBSCRIBE" => PubSub::Unsubscribe,
            "PUNSUBSCRIBE" => PubSub::Punsubscribe,
            "SUNSUBSCRIBE" => PubSub::Sunsubscribe,
            _ => return None,
        })
    }

    /// The first element of a push / RESP2 array as the server writes it.
    pub fn of_push(first: &[u8]) -> Option<PubSub> {
        Some(match first {
            b"subscribe" => PubSub::Subscribe,
            b"psubscribe" => PubSub::Psubscribe,
            b"ssubscribe" => PubSub::Ssubscribe,
            b"unsubscribe" => PubSub::Unsubscribe,
            b"punsubscribe" => PubSub::Punsubscribe,
            b"sunsubscribe" => PubSub::Sunsubscribe,
            b"message" | b"pmessage" | b"smessage" => PubSub::Message,
            _ => return None,
        })
    }

    pub fn is_unsubscribe(self) -> bool {
        matches!(
            self,
            PubSub::Unsubscribe | PubSub::Punsubscribe | PubSub::Sunsubscribe
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_sorted_and_upper_case() {
        assert!(KNOWN.windows(2).all(|w| w[0] < w[1]));
        assert!(KNOWN.iter().all(|k| k.len() <= LONGEST_KNOWN));
        assert_eq!(KNOWN.iter().map(|k| k.len()).max(), Some(LONGEST_KNOWN));
        for k in KNOWN.iter().chain(CONTAINERS) {
            assert_eq!(*k, k.to_ascii_uppercase());
        }
        assert!(CONTAINERS.iter().all(|c| KNOWN.contains(c)));
        assert!(is_known(b"hgetall") && is_known(b"Client") && !is_known(b"GETT"));
        assert!(is_known_prefix(b"hge") && !is_known_prefix(b"POST"));
        assert!(is_module_command(b"JSON.GET") && is_module_command(b"ft.search"));
        assert!(!is_module_command(b"JSON.") && !is_module_command(b".GET"));
        assert!(!is_module_command(b"1X.GET") && !is_module_command(b"A.B.C"));
    }
}
