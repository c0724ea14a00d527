# JSON -> shell assignments for the install agent (busybox awk; also runs under gawk/mawk).
#   awk -v mode=params -f json.awk < parameters.json   ->  export OSP_<NAME>='value' ...
#     (-v only=secret: only the parameters of that visibility)
#   awk -v mode=meta   -f json.awk < meta_data.json    ->  export INSTANCE_NAME=... DISK_COUNT=...
# A full JSON parser (objects, arrays, strings with every escape incl. \uXXXX and surrogate
# pairs -> UTF-8, numbers, true/false/null) into a flat table path -> value, paths joined by
# "/" (no parameter name contains "/"). Values are single-quoted for `eval`. Malformed input,
# a NUL character or a name that maps to no shell name: message on stderr, exit 1, no output.
function fail(msg) {
  printf "json.awk: %s (at offset %d)\n", msg, pos > "/dev/stderr"
  failed = 1
  exit 1
}
function ws(   c) {
  while (pos <= n) {
    c = substr(s, pos, 1)
    if (c != " " && c != "\t" && c != "\n" && c != "\r") return
    pos++
  }
}
function hexval(h,   i, v, c) {
  v = 0
  for (i = 1; i <= 4; i++) {
    c = index("0123456789abcdef", tolower(substr(h, i, 1)))
    if (c == 0) fail("bad \\u escape")
    v = v * 16 + c - 1
  }
  return v
}
function utf8(cp) {
  if (cp == 0) fail("NUL character")
  if (cp < 128) return sprintf("%c", cp)
  if (cp < 2048) return sprintf("%c%c", 192 + int(cp / 64), 128 + cp % 64)
  if (cp < 65536) return sprintf("%c%c%c", 224 + int(cp / 4096), 128 + int(cp / 64) % 64, 128 + cp % 64)
  return sprintf("%c%c%c%c", 240 + int(cp / 262144), 128 + int(cp / 4096) % 64, 128 + int(cp / 64) % 64, 128 + cp % 64)
}
function str(   out, c, e, cp, lo) {
  pos++ # opening quote
  out = ""
  while (pos <= n) {
    c = substr(s, pos, 1)
    if (c == "\"") { pos++; return out }
    if (c != "\\") { out = out c; pos++; continue }
    e = substr(s, pos + 1, 1)
    pos += 2
    if (e == "\"" || e == "\\" || e == "/") out = out e
    else if (e == "n") out = out "\n"
    else if (e == "t") out = out "\t"
    else if (e == "r") out = out "\r"
    else if (e == "b") out = out "\b"
    else if (e == "f") out = out "\f"
    else if (e == "u") {
      cp = hexval(substr(s, pos, 4))
      pos += 4
      if (cp >= 55296 && cp < 56320 && substr(s, pos, 2) == "\\u") {
        lo = hexval(substr(s, pos + 2, 4))
        if (lo >= 56320 && lo < 57344) { cp = 65536 + (cp - 55296) * 1024 + (lo - 56320); pos += 6 }
      }
      if (cp >= 55296 && cp < 57344) cp = 65533 # a lone surrogate: U+FFFD
      out = out utf8(cp)
    } else fail("bad escape")
  }
  fail("unterminated string")
}
function put(path, v) { val[path] = v; if (!(path in seen)) { seen[path] = 1; keys[++nkeys] = path } }
function join(path, k) { return path == "" ? k : path "/" k }
function value(path,   c, k, i, rest) {
  ws()
  c = substr(s, pos, 1)
  if (c == "{") {
    pos++; ws()
    if (substr(s, pos, 1) == "}") { pos++; return }
    while (1) {
      ws()
      if (substr(s, pos, 1) != "\"") fail("expected a key")
      k = str(); ws()
      if (substr(s, pos, 1) != ":") fail("expected :")
      pos++
      value(join(path, k)); ws()
      c = substr(s, pos, 1); pos++
      if (c == "}") return
      if (c != ",") fail("expected , or }")
    }
  }
  if (c == "[") {
    pos++; ws(); i = 0
    if (substr(s, pos, 1) == "]") { pos++; return }
    while (1) {
      value(join(path, i++)); ws()
      c = substr(s, pos, 1); pos++
      if (c == "]") return
      if (c != ",") fail("expected , or ]")
    }
  }
  if (c == "\"") { put(path, str()); return }
  rest = substr(s, pos, 64)
  if (match(rest, /^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?/)) { put(path, substr(rest, 1, RLENGTH)); pos += RLENGTH; return }
  if (substr(rest, 1, 4) == "true") { put(path, "true"); pos += 4; return }
  if (substr(rest, 1, 5) == "false") { put(path, "false"); pos += 5; return }
  if (substr(rest, 1, 4) == "null") { put(path, ""); pos += 4; return }
  fail("unexpected character")
}
# 'it'"'"'s' style single quoting: safe for eval whatever the value holds.
function q(v,   out, i) {
  out = ""
  while ((i = index(v, "'")) > 0) { out = out substr(v, 1, i - 1) "'\\''"; v = substr(v, i + 1) }
  return "'" out v "'"
}
function emit(name, v) {
  if (name !~ /^[A-Za-z_][A-Za-z0-9_]*$/) fail("no shell name for a parameter")
  lines[++nlines] = "export " name "=" q(v)
}
{ s = s $0 "\n" }
END {
  if (failed) exit 1
  n = length(s); pos = 1
  value("")
  ws()
  if (pos <= n) fail("trailing data")
  if (mode == "params") {
    # {"name": ["value", "public"|"private"|"secret"]} -> OSP_NAME (upper case, [.-] -> _)
    for (i = 1; i <= nkeys; i++) {
      k = keys[i]
      if (k !~ /\/0$/) continue
      name = substr(k, 1, length(k) - 2)
      if (index(name, "/") > 0) continue
      if (only != "" && val[name "/1"] != only) continue
      env = "OSP_" toupper(name)
      gsub(/[.-]/, "_", env)
      emit(env, val[k])
    }
  } else if (mode == "meta") {
    emit("OS_API_VERSION", "20")
    emit("INSTANCE_NAME", val["name"])
    if ("hostname" in val) emit("INSTANCE_HOSTNAME", val["hostname"])
    if ("os/name" in val) emit("INSTANCE_OS", val["os/name"])
    if ("os/variant" in val) emit("OS_VARIANT", val["os/variant"])
    # Disks are attached in index order as virtio disks: vda, vdb, ...
    for (d = 0; ("hardware/disks/" d "/index") in val; d++) {
      emit("DISK_" d "_PATH", "/dev/vd" substr("abcdefghijklmnopqrstuvwxyz", d + 1, 1))
      emit("DISK_" d "_ACCESS", "rw")
    }
    emit("DISK_COUNT", d)
    if ("hardware/memoryMiB" in val) emit("INSTANCE_BE_maxmem", val["hardware/memoryMiB"])
    if ("hardware/vcpus" in val) emit("INSTANCE_BE_vcpus", val["hardware/vcpus"])
    emit("NIC_COUNT", "0")
  } else fail("mode must be params or meta")
  for (i = 1; i <= nlines; i++) print lines[i]
}
