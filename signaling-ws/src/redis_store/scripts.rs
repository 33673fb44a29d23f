//! The Lua scripts of the Redis room store: each change to a room is one atomic script, so
//! instances racing on one room (two registrations for the last place, a leave and a sweep) see
//! one order.

use super::room_key;
use crate::protocol::ErrorCode;
use mesh_core::{MemberInfo, PeerId, Role, RoomId};
use redis::aio::ConnectionManager;
use std::sync::LazyLock;

/// KEYS: members, workers, admin, first, rooms, the instance's members, the room's sequence.
/// ARGV: peer, entry, is worker, rejoin, max workers, room, instance entry.
/// Returns `{"dup"}`, `{"full"}` or `{"ok", admin or first or "", sequence, entry...}`. A peer held by a
/// server whose lease expired is taken over (the peer registering again elsewhere after its
/// server died): it never left, so nobody is told it did.
static JOIN: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
local held = redis.call('HGET', KEYS[1], ARGV[1])
if held then
  local d = cjson.decode(held)
  if redis.call('EXISTS', 'mesh:inst:' .. d.inst) == 1 then return {'dup'} end
  redis.call('SREM', 'mesh:inst:' .. d.inst .. ':m', ARGV[6] .. '\n' .. ARGV[1] .. '\n' .. d.conn)
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('SREM', KEYS[2], ARGV[1])
end
local workers = redis.call('SMEMBERS', KEYS[2])
if ARGV[3] == '1' and #workers >= tonumber(ARGV[5]) then return {'full'} end
local admin = redis.call('GET', KEYS[3])
local seq = redis.call('INCR', KEYS[7])
redis.call('PERSIST', KEYS[7])
local out = {'ok', admin or redis.call('GET', KEYS[4]) or '', tostring(seq)}
for _, w in ipairs(workers) do
  local e = redis.call('HGET', KEYS[1], w)
  if e then table.insert(out, e) end
end
if ARGV[3] == '1' and ARGV[4] == '0' and #workers == 0 and not admin then
  redis.call('SET', KEYS[4], ARGV[1])
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if ARGV[3] == '1' then redis.call('SADD', KEYS[2], ARGV[1]) end
redis.call('SADD', KEYS[5], ARGV[6])
redis.call('SADD', KEYS[6], ARGV[7])
return out
"#,
    )
});

/// KEYS: members, workers, admin, first, rooms, the instance's members, the room's sequence.
/// ARGV: peer, instance, connection, room, instance entry. Returns the room's sequence number
/// of the departure, 0 if it removed nothing. An empty room's sequence expires after a day.
static LEAVE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
local e = redis.call('HGET', KEYS[1], ARGV[1])
redis.call('SREM', KEYS[6], ARGV[5])
if not e then return 0 end
local d = cjson.decode(e)
if d.inst ~= ARGV[2] or d.conn ~= ARGV[3] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('SREM', KEYS[2], ARGV[1])
if redis.call('GET', KEYS[3]) == ARGV[1] then redis.call('DEL', KEYS[3]) end
if redis.call('GET', KEYS[4]) == ARGV[1] then redis.call('DEL', KEYS[4]) end
local seq = redis.call('INCR', KEYS[7])
if redis.call('HLEN', KEYS[1]) == 0 then
  redis.call('SREM', KEYS[5], ARGV[4])
  redis.call('DEL', KEYS[3], KEYS[4], KEYS[8])
  redis.call('PEXPIRE', KEYS[7], 86400000)
end
return seq
"#,
    )
});

/// KEYS: admin, first, members, the room's sequence, the admin's epoch. ARGV: peer, epoch.
/// Returns the room's sequence number of the change, 0 when the admin did not change, -1 when
/// another admin of a higher epoch is named (the epoch is kept when that admin leaves).
static SET_ADMIN: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
if redis.call('HEXISTS', KEYS[3], ARGV[1]) == 0 then return 0 end
local same = redis.call('GET', KEYS[1]) == ARGV[1]
if not same and tonumber(ARGV[2]) < tonumber(redis.call('GET', KEYS[5]) or '0') then return -1 end
redis.call('SET', KEYS[5], ARGV[2])
redis.call('DEL', KEYS[2])
if same then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
return redis.call('INCR', KEYS[4])
"#,
    )
});

/// KEYS: admin. ARGV: peer.
static WITHDRAW: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
"#,
    )
});

/// `script` (JOIN or LEAVE) with the keys both take: the room's members, workers, admin and
/// first worker, the set of rooms, `inst`'s members, and the room's sequence.
fn membership<'a>(script: &'a redis::Script, room: &RoomId, inst: &str) -> redis::ScriptInvocation<'a> {
    let mut call = script.prepare_invoke();
    for what in ["m", "w", "admin", "first"] {
        call.key(room_key(room, what));
    }
    call.key("mesh:rooms").key(format!("mesh:inst:{inst}:m")).key(room_key(room, "seq"));
    call.key(room_key(room, "admin_epoch"));
    call
}

fn inst_entry(room: &RoomId, peer: &PeerId, conn: &str) -> String {
    format!("{room}\n{peer}\n{conn}")
}

/// Adds a member, atomically with the duplicate and room-limit checks: the room's workers
/// and its admin (or first worker) as the registration answer, and the room's sequence number
/// of the join.
#[allow(clippy::too_many_arguments)]
pub(super) async fn join(
    c: &mut ConnectionManager,
    room: &RoomId,
    peer: &PeerId,
    entry: &str,
    role: Role,
    rejoin: bool,
    max_workers: usize,
    inst: &str,
    conn: u64,
) -> Result<Result<(Vec<MemberInfo>, Option<PeerId>, u64), ErrorCode>, ErrorCode> {
    let out: Vec<String> = membership(&JOIN, room, inst)
        .arg(peer.as_str())
        .arg(entry)
        .arg(if role == Role::Worker { "1" } else { "0" })
        .arg(if rejoin { "1" } else { "0" })
        .arg(max_workers)
        .arg(room.as_str())
        .arg(inst_entry(room, peer, &conn.to_string()))
        .invoke_async(c)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "redis join failed");
            ErrorCode::Unavailable
        })?;
    match out.first().map(String::as_str) {
        Some("dup") => Ok(Err(ErrorCode::DuplicatePeer)),
        Some("full") => Ok(Err(ErrorCode::RoomFull)),
        Some("ok") => {
            let admin = out.get(1).filter(|a| !a.is_empty()).and_then(|a| PeerId::new(a.as_str()).ok());
            let seq = out.get(2).and_then(|s| s.parse().ok()).ok_or(ErrorCode::Unavailable)?;
            let members = out[3..]
                .iter()
                .filter_map(|e| serde_json::from_str::<super::Entry>(e).ok())
                .map(|e| e.info)
                .filter(|m| &m.peer != peer)
                .collect();
            Ok(Ok((members, admin, seq)))
        }
        _ => Err(ErrorCode::Unavailable),
    }
}

/// Removes `peer` if `inst`'s connection `conn` still holds it; the room's sequence number of
/// the departure if it did.
pub(super) async fn leave(
    c: &mut ConnectionManager,
    room: &RoomId,
    peer: &PeerId,
    inst: &str,
    conn: &str,
) -> Option<u64> {
    let removed: redis::RedisResult<i64> = membership(&LEAVE, room, inst)
        .arg(peer.as_str())
        .arg(inst)
        .arg(conn)
        .arg(room.as_str())
        .arg(inst_entry(room, peer, conn))
        .invoke_async(c)
        .await;
    match removed {
        Ok(seq) => u64::try_from(seq).ok().filter(|s| *s > 0),
        Err(e) => {
            tracing::warn!(error = %e, %peer, "redis leave failed (the lease sweep removes it)");
            None
        }
    }
}

/// What [`set_admin`] did.
pub(super) enum AdminSet {
    /// The admin changed, at this room sequence number.
    Changed(u64),
    /// It was named already (or is not a member, or the store is unreachable).
    Same,
    /// Another admin of a higher epoch is named.
    Refused,
}

/// Makes `peer` the admin at `epoch`.
pub(super) async fn set_admin(c: &mut ConnectionManager, room: &RoomId, peer: &PeerId, epoch: u64) -> AdminSet {
    let changed: redis::RedisResult<i64> = SET_ADMIN
        .key(room_key(room, "admin"))
        .key(room_key(room, "first"))
        .key(room_key(room, "m"))
        .key(room_key(room, "seq"))
        .key(room_key(room, "admin_epoch"))
        .arg(peer.as_str())
        .arg(epoch)
        .invoke_async(c)
        .await;
    match changed {
        Ok(n) if n > 0 => AdminSet::Changed(n as u64),
        Ok(n) if n < 0 => AdminSet::Refused,
        _ => AdminSet::Same,
    }
}

/// Forgets `peer` as admin if it is.
pub(super) async fn withdraw_admin(c: &mut ConnectionManager, room: &RoomId, peer: &PeerId) {
    let _: redis::RedisResult<i64> = WITHDRAW.key(room_key(room, "admin")).arg(peer.as_str()).invoke_async(c).await;
}
