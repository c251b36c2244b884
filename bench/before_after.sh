#!/usr/bin/env bash
# Before/after comparison of GeekBlog's own contenders across two commits, runs interleaved so that a
# machine's changing load falls on both sides alike; prints each side's table of medians.
#
#   bash bench/before_after.sh BEFORE_REV [AFTER_REV=HEAD] [ROUNDS=3] [CONTENDERS=geekblog_service,geekblog_embedded]
#
# Each side runs from a detached git worktree under var/before-after/ with this checkout's .venv (make install
# first). Never fails on a timing.
set -euo pipefail
cd "$(dirname "$0")/.."
before=${1:?usage: bench/before_after.sh BEFORE_REV [AFTER_REV] [ROUNDS] [CONTENDERS]}
after=${2:-HEAD}
rounds=${3:-3}
contenders=${4:-geekblog_service,geekblog_embedded}
root=$PWD/var/before-after
venv=$PWD/.venv
peers=${PEERS_DIR:-$(cd .. && pwd)/shared/peers}
rm -rf "$root" && mkdir -p "$root"
git worktree prune
for side in before after; do
  rev=$before; [ "$side" = after ] && rev=$after
  git worktree add -q --detach "$root/$side-tree" "$rev"
done
trap 'git worktree remove --force "$root/before-tree"; git worktree remove --force "$root/after-tree"' EXIT
for round in $(seq 1 "$rounds"); do
  for side in before after; do
    tree=$root/$side-tree
    (cd "$tree" && GEEKBLOG_VENV=$venv PYTHONPATH=$tree "$venv/bin/python" bench/compare.py --runs 1 \
      --peers-dir "$peers" --contenders "$contenders" --out "$root/$side-$round" > "$root/$side-$round.log" 2>&1) || true
    mkdir -p "$root/$side-all"
    for contender in ${contenders//,/ }; do
      cp "$root/$side-$round/$contender-run1.json" "$root/$side-all/$contender-run$round.json" 2>/dev/null || true
    done
    echo "[before_after] $side round $round done"
  done
done
for side in before after; do
  echo "== $side ($([ "$side" = before ] && echo "$before" || echo "$after"))"
  "$venv/bin/python" bench/compare.py --render-only --out "$root/$side-all" | grep '^|'
done
