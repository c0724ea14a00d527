/**
 * How long an orphaned process stays a zombie before its reaper collects it: the wait libvirt's
 * destroy adds to every appliance's end (it polls the killed QEMU's pid, and a zombie still
 * answers). `sh -c REAP_PROBE sh PIDFILE` orphans a `sleep 0.2` (its subshell exits), waits until
 * it is a zombie, then prints the ms until it is gone. Whoever reaps it is the reaper being
 * measured: the nearest subreaper above the shell, else PID 1 of its PID namespace.
 */
export const REAP_PROBE = [
  '( sleep 0.2 & echo $! > "$1" )',
  'p=$(cat "$1")',
  "while [ -e /proc/$p ] && ! grep -q ') Z' /proc/$p/stat 2>/dev/null; do :; done",
  't0=$(date +%s%N)',
  'while [ -e /proc/$p ]; do :; done',
  't1=$(date +%s%N)',
  'echo $(( (t1 - t0) / 1000000 ))',
].join('\n');

/** The probe's answer in ms (NaN when it printed something else). */
export function reapMs(stdout: string): number {
  const t = stdout.trim();
  return /^\d+$/.test(t) ? Number(t) : NaN;
}
