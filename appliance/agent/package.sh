# Ganeti's OS install package (busybox sh; sourced by agent.sh, and by host-side tests with the
# appliance's busybox). A helper VM of `gnt-instance add` with an install image reads the
# package Ganeti's `backend.ExportOS` wrote (`os/`: the OS definition; `environment`: the OS
# scripts' environment, `NAME=value` lines, OS_SCRIPT=create_untrusted and DISK_<N>_PATH=/dev/vdb…
# from the master) and runs `os/$OS_SCRIPT` in that environment. No value of the environment
# file is ever evaluated: each line is split at its first `=`, a name that is not a shell name
# (^[A-Z_][A-Z0-9_]*$) is skipped, the value is assigned as it is.

# package_env FILE: exports FILE's variables into the current shell. Only builtins run in the
# loop, so a PATH or IFS the file sets changes nothing here.
package_env() {
  while IFS= read -r pkg_line || [ -n "$pkg_line" ]; do
    pkg_name=${pkg_line%%=*}
    [ "$pkg_name" = "$pkg_line" ] && continue
    case $pkg_name in '' | [!A-Z_]* | *[!A-Z0-9_]*) continue ;; esac
    export "$pkg_name=${pkg_line#*=}"
  done <"$1"
  unset pkg_line pkg_name
}

# package_get NAME FILE: prints the value FILE gives NAME (the last line for it), nothing if none.
package_get() {
  (
    pkg_v=
    while IFS= read -r pkg_line || [ -n "$pkg_line" ]; do
      [ "${pkg_line%%=*}" = "$1" ] && [ "${pkg_line%%=*}" != "$pkg_line" ] && pkg_v=${pkg_line#*=}
    done <"$2"
    printf '%s' "$pkg_v"
  )
}

# package_unpack TGZ DIR: unpacks the package into DIR (busybox tar: no owners restored).
# Fails unless DIR then holds `environment` and a directory `os`.
package_unpack() {
  mkdir -p "$2" && tar -xzo -f "$1" -C "$2" && [ -f "$2/environment" ] && [ -d "$2/os" ]
}

# package_script DIR: the script the package names (OS_SCRIPT), printed when it is a plain file
# name of a regular file in DIR/os; fails otherwise.
package_script() {
  pkg_s=$(package_get OS_SCRIPT "$1/environment")
  case $pkg_s in '' | */* | .*) return 1 ;; esac
  [ -f "$1/os/$pkg_s" ] || return 1
  printf '%s' "$pkg_s"
}

# package_environ DIR SECRETS: in a subshell, the environment the script gets: every exported
# variable of the agent dropped, then a default PATH, the package's environment, then SECRETS
# (`export OSP_…='…'` lines from json.awk: the secret parameters, never in the package).
# Callers run `package_environ …; …` inside ( ).
package_environ() {
  for pkg_n in $(export -p | sed -n 's/^export \([A-Za-z_][A-Za-z0-9_]*\)=.*/\1/p'); do
    unset "$pkg_n"
  done
  export PATH=/usr/sbin:/usr/bin:/sbin:/bin
  package_env "$1/environment"
  eval "$2"
}

# package_osp_count DIR SECRETS: how many OSP_ variables the script gets (names only).
package_osp_count() {
  (
    package_environ "$1" "$2"
    export -p | grep -c '^export OSP_'
  )
}

# package_run DIR SECRETS: runs DIR/os/$OS_SCRIPT in DIR/os with that environment; its exit code.
package_run() {
  pkg_s=$(package_script "$1") || return 127
  (
    package_environ "$1" "$2"
    cd "$1/os" && exec "./$pkg_s"
  )
}
