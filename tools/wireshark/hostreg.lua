-- Wireshark/tshark dissector for the hostreg wire protocol (docs/PROTOCOL.md).
-- The 5-byte frame header, the optional authentication block and tag, and
-- the protobuf payload of the four messages, decoded field by field in Lua
-- (the schema is small, and this needs no protobuf preferences or search
-- paths). Registered on UDP port 9099, and as a heuristic dissector for any
-- UDP datagram that starts with "HR" version 1.
--
-- Install:  mkdir -p ~/.local/lib/wireshark/plugins && cp tools/wireshark/hostreg.lua ~/.local/lib/wireshark/plugins/
-- One-off:  tshark -X lua_script:tools/wireshark/hostreg.lua -r capture.pcap -O hostreg

local p = Proto("hostreg", "hostreg registry protocol")

local types = {[1] = "heartbeat", [2] = "status", [3] = "leave", [0x81] = "ack"}
local statuses = {[0] = "unspecified", [1] = "idle", [2] = "busy", [3] = "allocated"}
local results = {[0] = "unspecified", [1] = "ok", [2] = "duplicate", [3] = "unknown_host",
                 [4] = "invalid", [5] = "retry_later", [6] = "unauthorized"}
local reasons = {[1] = "truncated", [2] = "bad_magic", [3] = "bad_version", [4] = "bad_type",
                 [5] = "bad_flags", [6] = "too_big", [7] = "bad_payload", [8] = "bad_auth",
                 [16] = "bad_host_id", [17] = "bad_room_id", [18] = "bad_region",
                 [19] = "bad_status", [20] = "bad_capacity", [21] = "bad_available_slots",
                 [22] = "too_many_regions",
                 [32] = "unavailable", [33] = "overload", [34] = "full", [35] = "source_full",
                 [50] = "nomem"}

local f = {
  magic = ProtoField.string("hostreg.magic", "Magic"),
  version = ProtoField.uint8("hostreg.version", "Version"),
  type = ProtoField.uint8("hostreg.type", "Type", base.HEX, types),
  flags = ProtoField.uint8("hostreg.flags", "Flags", base.HEX),
  auth = ProtoField.bool("hostreg.flags.auth", "Authenticated", 8, nil, 0x01),
  key_id = ProtoField.uint8("hostreg.key_id", "Key id"),
  timestamp = ProtoField.absolute_time("hostreg.timestamp", "Timestamp", base.UTC),
  tag = ProtoField.bytes("hostreg.tag", "Tag"),
  seq = ProtoField.uint64("hostreg.seq", "Sequence"),
  host_uuid = ProtoField.guid("hostreg.host_uuid", "Host UUID"),
  host_id = ProtoField.string("hostreg.host_id", "Host id"),
  room_id = ProtoField.string("hostreg.room_id", "Room id"),
  region = ProtoField.string("hostreg.region", "Region"),
  status = ProtoField.uint32("hostreg.status", "Status", base.DEC, statuses),
  capacity = ProtoField.uint32("hostreg.capacity", "Capacity"),
  available_slots = ProtoField.uint32("hostreg.available_slots", "Available slots"),
  result = ProtoField.uint32("hostreg.result", "Result", base.DEC, results),
  ttl = ProtoField.uint32("hostreg.ttl", "TTL (s)"),
  interval = ProtoField.uint32("hostreg.interval", "Interval (s)"),
  reason = ProtoField.uint32("hostreg.reason", "Reason", base.DEC, reasons),
  unknown = ProtoField.bytes("hostreg.unknown", "Unknown field"),
}
p.fields = f

local e_malformed = ProtoExpert.new("hostreg.malformed", "Malformed hostreg frame",
                                    expert.group.MALFORMED, expert.severity.ERROR)
p.experts = {e_malformed}

-- protobuf field number -> (ProtoField, wire type 0 varint / 2 bytes) per message type
local schema = {
  [1] = {[1] = {f.seq, 0}, [2] = {f.host_uuid, 2}, [3] = {f.host_id, 2}, [4] = {f.room_id, 2},
         [5] = {f.region, 2}, [6] = {f.status, 0}, [7] = {f.capacity, 0},
         [8] = {f.available_slots, 0}},
  [2] = {[1] = {f.seq, 0}, [2] = {f.host_uuid, 2}, [3] = {f.host_id, 2}, [4] = {f.status, 0}},
  [3] = {[1] = {f.seq, 0}, [2] = {f.host_uuid, 2}, [3] = {f.host_id, 2}},
  [0x81] = {[1] = {f.seq, 0}, [2] = {f.result, 0}, [3] = {f.ttl, 0}, [4] = {f.interval, 0},
            [5] = {f.reason, 0}},
}

-- Reads a varint at offset; returns value (UInt64), new offset, or nil.
local function varint(tvb, off, stop)
  local v = UInt64(0)
  local shift = 0
  while off < stop and shift < 64 do
    local b = tvb(off, 1):uint()
    v = v:bor(UInt64(bit.band(b, 0x7f)):lshift(shift))
    off = off + 1
    if bit.band(b, 0x80) == 0 then return v, off end
    shift = shift + 7
  end
  return nil
end

local function payload(tvb, tree, pinfo, mtype, off, stop)
  local fields = schema[mtype] or {}
  local summary = {}
  while off < stop do
    local start = off
    local key
    key, off = varint(tvb, off, stop)
    if not key then tree:add_proto_expert_info(e_malformed, "bad varint"); return summary end
    local num = key:rshift(3):tonumber()
    local wt = key:band(UInt64(7)):tonumber()
    local def = fields[num]
    if wt == 0 then
      local v
      v, off = varint(tvb, off, stop)
      if not v then tree:add_proto_expert_info(e_malformed, "bad varint"); return summary end
      if def and def[2] == 0 then
        if def[1] == f.seq then
          tree:add(f.seq, tvb(start, off - start), v)
          summary[#summary + 1] = "seq=" .. tostring(v)
        else
          local n = v:tonumber()
          tree:add(def[1], tvb(start, off - start), n)
          local names = def[1] == f.status and statuses or def[1] == f.result and results
                        or def[1] == f.reason and reasons or nil
          local label = def[1] == f.status and "status" or def[1] == f.result and "result"
                        or def[1] == f.reason and "reason" or def[1] == f.ttl and "ttl" or "interval"
          summary[#summary + 1] = label .. "=" .. (names and names[n] or tostring(n))
        end
      else
        tree:add(f.unknown, tvb(start, off - start))
      end
    elseif wt == 2 then
      local len
      len, off = varint(tvb, off, stop)
      if not len or off + len:tonumber() > stop then
        tree:add_proto_expert_info(e_malformed, "length beyond the payload")
        return summary
      end
      local n = len:tonumber()
      if def and def[2] == 2 then
        if def[1] == f.host_uuid then
          if n == 16 then
            tree:add(f.host_uuid, tvb(off, 16))
            local h = tvb(off, 16):bytes():tohex():lower()
            summary[#summary + 1] = "host=" .. h:sub(1, 8) .. "-" .. h:sub(9, 12) .. "-" ..
                                    h:sub(13, 16) .. "-" .. h:sub(17, 20) .. "-" .. h:sub(21, 32)
          else
            tree:add_proto_expert_info(e_malformed, "host_uuid is not 16 bytes")
          end
        elseif n > 0 then
          local s = tvb(off, n):string()
          tree:add(def[1], tvb(off, n))
          local label = def[1] == f.host_id and "host" or def[1] == f.room_id and "room" or "region"
          summary[#summary + 1] = label .. "=" .. s
        end
      else
        tree:add(f.unknown, tvb(start, off + n - start))
      end
      off = off + n
    elseif wt == 5 then off = off + 4
    elseif wt == 1 then off = off + 8
    else
      tree:add_proto_expert_info(e_malformed, "unsupported wire type " .. wt)
      return summary
    end
  end
  return summary
end

function p.dissector(tvb, pinfo, root)
  local len = tvb:len()
  if len < 5 or tvb(0, 2):string() ~= "HR" then return 0 end
  pinfo.cols.protocol = "HOSTREG"
  local tree = root:add(p, tvb(), "hostreg")
  tree:add(f.magic, tvb(0, 2))
  tree:add(f.version, tvb(2, 1))
  local mtype = tvb(3, 1):uint()
  tree:add(f.type, tvb(3, 1))
  local flags = tvb(4, 1):uint()
  local ft = tree:add(f.flags, tvb(4, 1))
  ft:add(f.auth, tvb(4, 1))
  local off, stop = 5, len
  if bit.band(flags, 1) == 1 then
    if len < 26 then tree:add_proto_expert_info(e_malformed, "truncated authentication"); return len end
    tree:add(f.key_id, tvb(5, 1))
    tree:add(f.timestamp, tvb(6, 4), NSTime(tvb(6, 4):uint(), 0))
    tree:add(f.tag, tvb(len - 16, 16))
    off, stop = 10, len - 16
  end
  local name = types[mtype] or string.format("type 0x%02x", mtype)
  local summary = payload(tvb, tree, pinfo, mtype, off, stop)
  pinfo.cols.info = name .. " " .. table.concat(summary, " ")
  tree:append_text(", " .. name)
  return len
end

local function heuristic(tvb, pinfo, root)
  if tvb:len() < 5 or tvb(0, 3):bytes():tohex() ~= "485201" then return false end
  p.dissector(tvb, pinfo, root)
  return true
end

DissectorTable.get("udp.port"):add(9099, p)
p:register_heuristic("udp", heuristic)
