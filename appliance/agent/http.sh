# The agent's HTTP client (busybox sh; sourced by agent.sh, and by host-side tests with the
# appliance's own busybox). Every request carries an IMDSv2 session token, so an instance with
# `ec2.imdsV2: required` (which covers every dialect, /ganeti included) can be installed, and
# every request is retried until it succeeds or its retry window closes, so a metad restart
# (kill -9 and start again; the job is adopted) costs nothing.
#
# Inputs (set by the caller): URL (http://HOST[:PORT], no path), T (seconds per attempt), TTL
# (token lifetime asked for, seconds), ERRF (a scratch file for wget's error text; no values).
#
# busybox wget can send headers (--header) but only GET and POST (no --method): the token PUT is
# written by hand through `nc`, which half-closes after the request and prints the whole answer.
# The token is renewed once four fifths of its TTL have passed, and dropped after any failed
# request (a restarted metad has a new key and answers 401 to the old token): the next attempt
# PUTs a new one.
TOKEN=
TOKEN_RENEW_AT=0
TOKEN_HEADER=X-aws-ec2-metadata-token
# The uptime of the first failed attempt since the last success (empty: metad answers).
OUTAGE_SINCE=

# now: seconds since boot (monotonic; the appliance has no trustworthy wall clock).
now() {
  read -r up _ </proc/uptime
  echo "${up%%.*}"
}

# token_put: PUT /latest/api/token; sets TOKEN. Fails when metad is unreachable or does not
# answer 200 with a token (then requests go without one, as IMDSv1).
token_put() {
  hp=${URL#http://}
  hp=${hp%%/*}
  h=${hp%:*}
  p=80
  [ "$h" != "$hp" ] && p=${hp##*:}
  resp=$(printf 'PUT /latest/api/token HTTP/1.0\r\nHost: %s\r\n%s-ttl-seconds: %s\r\nContent-Length: 0\r\n\r\n' "$hp" "$TOKEN_HEADER" "$TTL" |
    timeout "$T" nc "$h" "$p" 2>/dev/null) || return 1
  case $(printf '%s\n' "$resp" | head -n 1) in
    'HTTP/1.'?' 200 '*) ;;
    *) return 1 ;;
  esac
  # The body is the token, the answer's last line (no newline after it); base64url only, so it
  # can never inject anything into a header.
  tok=$(printf '%s\n' "$resp" | tail -n 1)
  case $tok in
    '' | *[!A-Za-z0-9_-]*) return 1 ;;
  esac
  TOKEN=$tok
  TOKEN_RENEW_AT=$(($(now) + TTL - TTL / 5))
}

# token_fresh: a token that is not due for renewal, PUT when there is none or it is due.
token_fresh() {
  if [ -z "$TOKEN" ] || [ "$(now)" -ge "$TOKEN_RENEW_AT" ]; then
    TOKEN=
    token_put
  fi
  return 0
}

# attempt WGET-ARGS...: one request with the token (if any); 0 ok, 1 worth retrying (no answer,
# timeout, 401, 408, 429, 5xx), 2 refused for good (any other 4xx).
attempt() {
  if [ -n "$TOKEN" ]; then set -- --header "$TOKEN_HEADER: $TOKEN" "$@"; fi
  timeout "$T" wget -q "$@" 2>"$ERRF" && return 0
  case $(cat "$ERRF" 2>/dev/null) in
    *'HTTP/1.'?' 401 '* | *'HTTP/1.'?' 408 '* | *'HTTP/1.'?' 429 '*) return 1 ;;
    *'HTTP/1.'?' 4'[0-9][0-9]' '*) return 2 ;;
  esac
  return 1
}

# request UNTIL WGET-ARGS...: `attempt` until it succeeds, is refused for good, or the uptime
# passes UNTIL (then 1); one second between attempts, the token dropped after each failure.
# What the successful attempt wrote to stdout is in BODY (a failed attempt's partial output never
# is: each attempt is captured on its own; trailing newlines are dropped).
request() {
  until_=$1
  shift
  tries=0
  while :; do
    token_fresh
    BODY=$(attempt "$@")
    rc=$?
    if [ "$rc" -eq 0 ]; then
      OUTAGE_SINCE=
      return 0
    fi
    TOKEN=
    [ -z "$OUTAGE_SINCE" ] && OUTAGE_SINCE=$(now)
    tries=$((tries + 1))
    # On the console (stderr), once per request: the URL and wget's error (never a value).
    if [ "$tries" -eq 1 ] || [ "$rc" -eq 2 ]; then
      eval "last=\${$#}"
      why=$(tr -d '\n' <"$ERRF" 2>/dev/null | cut -c1-120)
      if [ "$rc" -eq 2 ]; then next='refused'; else next="retrying until ${until_}s"; fi
      echo "metad-agent: [$(uptime_s)] $last: ${why:-no answer in ${T}s} ($next)" >&2
    fi
    [ "$rc" -eq 2 ] && return 2
    [ "$(now)" -ge "$until_" ] && return 1
    sleep 1
  done
}

# uptime_s: seconds since boot with centiseconds (console timestamps).
uptime_s() {
  read -r up _ </proc/uptime
  echo "$up"
}
