# Sourced by the script tests (`. common.bash <source dir> <build dir>`): the two folders the
# test harness passes, the CLI, a scratch folder removed on exit, and a private demo-data cache;
# the caller's working directory becomes the source tree.
src=$1
build=$2
adfw="$build/bin/adfw"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export ADFW_CACHE="$work/cache"
cd "$src"
