#!/usr/bin/env bash
# Installs the class server's software on one machine (run as root; re-running it updates in place):
#   $PREFIX/venv        the course environment students' servers and kernels run in: requirements.txt,
#                       d2l (tools/install_d2l.py), lenet_course, jupyterhub (its singleuser server)
#                       and nbgitpuller; built from a system Python so every student can read it
#   $PREFIX/hub         the hub's own environment: jupyterhub, the first-use authenticator, the idle
#                       culler, the systemd spawner, and configurable-http-proxy (npm) in hub/node
#   $PREFIX/data        one read-only copy of MNIST and Fashion-MNIST (LENET_COURSE_DATA for all)
#   $PREFIX/course.git  the course's git repository the nbgitpuller links pull from (the teacher
#                       pushes updates here); $PREFIX/etc/gitconfig marks it a safe.directory
# PREFIX defaults to /opt/lenet-course; PYTHON to /usr/bin/python3 (not a pyenv or conda Python
# under /root: students cannot read it). The course environment is about 6 GB (torch with its CUDA
# libraries), the hub's about 0.1 GB; pip's cache is reused, so a second run downloads nothing.
set -euo pipefail
umask 022

REPO=$(cd "$(dirname "$0")/.." && pwd)
PREFIX=${PREFIX:-/opt/lenet-course}
PYTHON=${PYTHON:-/usr/bin/python3}
COURSE=$PREFIX/venv
HUB=$PREFIX/hub
DATA=$PREFIX/data
SOURCE=$PREFIX/course.git
PIP=(-m pip install --disable-pip-version-check -q)
START=$SECONDS

say() { printf '::: %s (%ds)\n' "$*" $((SECONDS - START)); }
die() { echo "install.sh: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run it as root (it writes $PREFIX and the hub adds users)"
command -v adduser >/dev/null || die "adduser is missing (apt-get install adduser)"
command -v npm >/dev/null || die "npm is missing (apt-get install nodejs npm): the hub's proxy"
command -v git >/dev/null || die "git is missing (apt-get install git): nbgitpuller needs it"
"$PYTHON" -c 'import sys, venv, ensurepip; assert sys.version_info >= (3, 10)' 2>/dev/null ||
  die "$PYTHON is not Python >= 3.10 with venv (apt-get install python3-venv)"
runuser -u nobody -- "$PYTHON" -c pass 2>/dev/null ||
  die "$PYTHON cannot be run by other users (a Python under /root?): set PYTHON=/usr/bin/python3"

say "course environment in $COURSE"
[ -x "$COURSE/bin/python" ] || "$PYTHON" -m venv "$COURSE"
"$COURSE/bin/python" "${PIP[@]}" -r "$REPO/requirements.txt" jupyterhub nbgitpuller
"$COURSE/bin/python" "$REPO/tools/install_d2l.py"
# not editable: the students' servers must not read the teacher's checkout
"$COURSE/bin/python" "${PIP[@]}" --no-deps --force-reinstall "$REPO"
"$COURSE/bin/python" -m pip check
mkdir -p "$COURSE/share/jupyter/lab/settings"
install -m 0644 "$REPO/deploy/lab-overrides.json" "$COURSE/share/jupyter/lab/settings/overrides.json"

say "hub environment in $HUB"
[ -x "$HUB/bin/python" ] || "$PYTHON" -m venv "$HUB"
"$HUB/bin/python" "${PIP[@]}" jupyterhub jupyterhub-firstuseauthenticator \
  jupyterhub-idle-culler jupyterhub-systemdspawner
npm install --silent --no-audit --no-fund --prefix "$HUB/node" configurable-http-proxy
ln -sf ../node/node_modules/.bin/configurable-http-proxy "$HUB/bin/configurable-http-proxy"
"$HUB/bin/python" -m pip check

say "data in $DATA"
if [ ! -d "$DATA/FashionMNIST/raw" ] || [ ! -d "$DATA/MNIST/raw" ]; then
  mkdir -p "$DATA"
  if [ -n "${LENET_COURSE_DATA:-}" ] && [ -d "$LENET_COURSE_DATA/FashionMNIST/raw" ]; then
    cp -r "$LENET_COURSE_DATA"/. "$DATA"/
  else
    "$COURSE/bin/python" -m lenet_course data --root "$DATA"
  fi
fi
chmod -R a+rX,a-w "$DATA"

say "course repository in $SOURCE"
if [ ! -d "$SOURCE" ]; then
  git clone -q --bare "$REPO" "$SOURCE"
  git -C "$SOURCE" symbolic-ref HEAD "refs/heads/$(git -C "$REPO" branch --show-current)"
fi
chmod -R a+rX "$SOURCE"
mkdir -p "$PREFIX/etc"
# students' git (nbgitpuller) reads this file as its system config (GIT_CONFIG_SYSTEM): it lets
# them clone a repository root owns
printf '[safe]\n\tdirectory = %s\n\tdirectory = %s/\n' "$SOURCE" "$SOURCE" >"$PREFIX/etc/gitconfig"
mkdir -p "$PREFIX/state" && chmod 0700 "$PREFIX/state"
if [ ! -f "$PREFIX/etc/students.txt" ]; then  # a demo class; the teacher replaces it
  printf '# one student name a line (lower case, letters, digits, - and _); restart the hub after editing\nstudent1\nstudent2\n' >"$PREFIX/etc/students.txt"
fi
[ -f "$PREFIX/etc/admins.txt" ] || printf '# teachers: the hub'"'"'s admin page (add students, stop servers)\n' >"$PREFIX/etc/admins.txt"

say "done"
du -sh "$COURSE" "$HUB" "$DATA" "$SOURCE" 2>/dev/null | sed 's/^/    /'
echo "    in $((SECONDS - START)) s; start the hub with: make hub"
