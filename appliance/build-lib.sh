# Shared by build.sh and build-debian.sh (sourced): how a build is reused and how a finished one
# is published. Needs `say` and `die` from the sourcing script.

# reuse_build DEST: prints DEST and exits when a finished build is there (its manifest.json).
reuse_build() {
  if [ -f "$1/manifest.json" ]; then
    say "cached: $1"
    printf '%s\n' "$1"
    exit 0
  fi
}

# publish_build OUT DEST [EXECUTABLE...]: makes OUT read-only (files 0444, the named files 0555,
# the directory 0555) and renames it to DEST. A concurrent build that finished first wins: OUT
# is then left for the caller's cleanup.
publish_build() {
  out_=$1
  dest_=$2
  shift 2
  chmod 0444 "$out_"/*
  for x in "$@"; do chmod 0555 "$out_/$x"; done
  chmod 0555 "$out_"
  if ! mv -T "$out_" "$dest_" 2>/dev/null; then
    [ -f "$dest_/manifest.json" ] || die "cannot move the build to $dest_"
    say "another build finished first: $dest_"
  fi
}
