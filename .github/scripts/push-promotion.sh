#!/usr/bin/env bash
# push-promotion.sh BRANCH
# Pushes the promotion commit promote.yml just made (HEAD: `main` plus the one stack file cdao promote
# wrote) to BRANCH on origin. The branch name is derived from the promotion's content, so a run with
# the same pins finds its branch already there: it is reused only if its tree is exactly HEAD's tree
# (the pull request then shows exactly this promotion, whoever pushed). Anything else on that branch,
# such as commits pushed by a person, or a branch created beforehand under that name, is refused: the
# pull request would carry content cdao promote did not write, under a body that says nothing else
# changes. Exit 0 pushed or reused, 1 refused (the branch is left as it is).
set -euo pipefail

branch="${1:?usage: push-promotion.sh BRANCH}"
if git push --quiet origin "HEAD:refs/heads/${branch}" 2> /dev/null; then
  echo "pushed ${branch}"
  exit 0
fi
# The push was refused: the branch exists (or the remote is unreachable, which the fetch reports).
git fetch --quiet origin "+refs/heads/${branch}:refs/remotes/origin/${branch}"
theirs=$(git rev-parse "refs/remotes/origin/${branch}^{tree}")
ours=$(git rev-parse "HEAD^{tree}")
if [ "${theirs}" = "${ours}" ]; then
  echo "::notice::branch ${branch} exists with exactly this promotion: open (or find) its pull request"
  exit 0
fi
echo "::error::branch ${branch} exists with other content than this promotion ($(git diff --stat "HEAD" "refs/remotes/origin/${branch}" | tail -n 1)); nothing pushed. Delete the branch (and close its pull request), then run Promote again"
exit 1
