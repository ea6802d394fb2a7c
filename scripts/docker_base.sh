#!/usr/bin/env bash
# A local stand-in for the public python:3.11-slim base image, for machines that cannot pull it:
# Debian bookworm (debootstrap --variant=minbase) with Debian's python3.11 in a venv at /opt/venv
# that comes first on PATH (so `python`, `pip` and installed scripts resolve as in the public image).
# Built with buildah as root and committed to the local image store; reused when it exists.
#
#   scripts/docker_base.sh [IMAGE]            build IMAGE (default localhost/xaudit-base:bookworm) unless it exists
#   scripts/docker_base.sh --remove [IMAGE]   remove it from the local store
#
# The Debian mirror is the one this machine's apt uses (/etc/apt/sources.list*), else deb.debian.org.
set -euo pipefail

remove=false
if [[ "${1:-}" == "--remove" ]]; then remove=true; shift; fi
IMAGE="${1:-localhost/xaudit-base:bookworm}"

if $remove; then
    buildah rmi "$IMAGE" >/dev/null 2>&1 && echo "removed $IMAGE" || echo "no image $IMAGE"
    exit 0
fi
if buildah inspect --type image "$IMAGE" >/dev/null 2>&1; then
    echo "base image $IMAGE exists (remove it with: $0 --remove $IMAGE)"
    exit 0
fi
for tool in buildah debootstrap; do
    command -v "$tool" >/dev/null || { echo "error: $tool is missing; install it with: apt-get install -y buildah debootstrap" >&2; exit 1; }
done

# This machine's Debian mirror: the first http(s) URI of a deb822 or one-line source naming debian.
mirror=$(cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
    | grep -v '^\s*#' | grep -oE 'https?://[^ ]*/debian/?' | grep -v security | head -n1 || true)
mirror="${mirror:-http://deb.debian.org/debian}"

ctr=""
log=$(mktemp)
cleanup() { rm -f "$log"; if [[ -n "$ctr" ]]; then buildah umount "$ctr" >/dev/null 2>&1 || true; buildah rm "$ctr" >/dev/null 2>&1 || true; fi; }
trap cleanup EXIT

echo "building $IMAGE: debootstrap bookworm from $mirror"
t0=$SECONDS
ctr=$(buildah from scratch)
root=$(buildah mount "$ctr")
timeout 1200 debootstrap --variant=minbase bookworm "$root" "$mirror" >"$log" 2>&1 \
    || { tail -n 20 "$log" "$root/debootstrap/debootstrap.log" >&2 || true
         echo "error: debootstrap of bookworm from $mirror failed (log above)" >&2; exit 1; }
# Debian's python3.11 (3.11.2) and venv, installed with apt inside the new root (its /proc, /dev mounted).
timeout 1200 buildah run --isolation chroot "$ctr" -- sh -ec '
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends python3.11 python3.11-venv ca-certificates >/dev/null
    python3.11 -m venv /opt/venv
    apt-get clean
    rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin'
buildah config --env LANG=C.UTF-8 --env VIRTUAL_ENV=/opt/venv \
    --env PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --cmd python3 "$ctr"
buildah umount "$ctr" >/dev/null
buildah commit --quiet --rm "$ctr" "$IMAGE" >/dev/null
ctr=$(buildah from --quiet "$IMAGE")
echo "built $IMAGE in $((SECONDS - t0)) s: $(buildah run --isolation chroot "$ctr" -- python --version 2>&1)"
