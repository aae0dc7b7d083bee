#!/usr/bin/env bash
# A local stand-in for python:3.11-slim-bookworm, for machines that reach Debian's package mirror
# but no container registry (docs/deploy.md, "Container images"). debootstrap makes a minimal
# Debian 12 root filesystem (minbase), apt adds the bookworm security updates and Debian's
# CPython 3.11 with venv support and CA certificates, docs and apt lists are removed as in
# Debian's slim images, and the result is imported as an image:
#
#   bash scripts/base-image.sh                     # -> localhost/debian-python:3.11-bookworm
#   BASE_IMAGE=localhost/debian-python:3.11-bookworm bash scripts/build-image.sh
#
# Settings: BASE_TAG (the image name), MIRROR and SECURITY_MIRROR (Debian archives),
# BUILDER (podman, the default, imports into the vfs storage that scripts/build-image.sh builds
# from, and which buildah --storage-driver vfs sees too; or docker).
#
# Differences from the official image that matter to the Dockerfile: Python is Debian's
# (/usr/bin/python3, 3.11.2 with Debian's patches), not python.org's in /usr/local/bin, and there
# is no `python` command, only `python3`. Needs root (debootstrap, chroot).
set -euo pipefail
cd "$(dirname "$0")/.."

BASE_TAG=${BASE_TAG:-localhost/debian-python:3.11-bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${SECURITY_MIRROR:-http://deb.debian.org/debian-security}
BUILDER=${BUILDER:-podman}
SUITE=bookworm

case $BUILDER in
    podman) import=(podman --storage-driver vfs import) ;;
    docker) import=(docker import) ;;
    *) echo "base-image: BUILDER must be podman or docker, got '$BUILDER'" >&2; exit 2 ;;
esac
if [ "$(id -u)" != 0 ]; then
    echo "base-image: debootstrap and chroot need root" >&2
    exit 2
fi
for tool in debootstrap "${import[0]}"; do
    command -v "$tool" >/dev/null || { echo "base-image: $tool is missing (apt-get install $tool)" >&2; exit 2; }
done

rootfs=$(mktemp -d /var/tmp/base-image.XXXXXX)
# mktemp makes it 0700; it becomes the image's /, which every user (uid 10001, apt's _apt) must reach.
chmod 0755 "$rootfs"
cleanup() {
    # debootstrap mounts /proc and /sys in the target and may leave them mounted if it fails;
    # --one-file-system keeps rm out of anything still mounted there.
    for mount in "$rootfs/proc" "$rootfs/sys"; do
        if mountpoint -q "$mount"; then umount -l "$mount" || true; fi
    done
    rm -rf --one-file-system "$rootfs"
}
trap cleanup EXIT

echo "base-image: debootstrap $SUITE (minbase) into $rootfs" >&2
debootstrap --variant=minbase "$SUITE" "$rootfs" "$MIRROR" >&2

# As Debian's slim images: packages installed from now on (here and in images built on this one)
# leave out docs, man pages and translations, keeping only the copyright files.
cat > "$rootfs/etc/dpkg/dpkg.cfg.d/slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/man/*
EOF

# The same archives as the official image (deb822, with security updates).
rm -f "$rootfs/etc/apt/sources.list"
cat > "$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $SECURITY_MIRROR
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF

# python3-venv brings python3.11-venv (ensurepip with pip's and setuptools' wheels), which
# `python3 -m venv` in the Dockerfile needs; ca-certificates as the official image has them.
echo "base-image: security updates, python3.11, python3-venv, ca-certificates" >&2
mount -t proc proc "$rootfs/proc"
chroot "$rootfs" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
    sh -euc 'apt-get update -q
             apt-get upgrade -y -q
             apt-get install -y -q --no-install-recommends python3.11 python3-venv ca-certificates
             apt-get clean
             python3 --version' >&2
umount "$rootfs/proc"

# Cleaned like the slim images: no apt lists or caches, no docs or man pages of the packages
# debootstrap installed before the exclusions existed (copyright files stay), no logs, and
# none of the host's files debootstrap copied in (the container runtime provides them).
rm -rf "${rootfs:?}"/var/lib/apt/lists/* "${rootfs:?}"/var/cache/apt/* "${rootfs:?}"/var/cache/debconf/*-old \
       "${rootfs:?}"/tmp/* "${rootfs:?}"/var/tmp/* "${rootfs:?}"/root/.cache \
       "${rootfs:?}"/usr/share/man/* "${rootfs:?}"/usr/share/info/* "${rootfs:?}"/usr/share/locale/* \
       "${rootfs:?}"/usr/share/groff/* "${rootfs:?}"/usr/share/lintian/* "${rootfs:?}"/usr/share/linda/* \
       "${rootfs:?}"/etc/resolv.conf "${rootfs:?}"/etc/hostname "${rootfs:?}"/dev/*
find "$rootfs/var/log" -type f -delete
find "$rootfs/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete

echo "base-image: root filesystem $(du -sh --one-file-system "$rootfs" | cut -f1); importing as $BASE_TAG" >&2
tar --numeric-owner -C "$rootfs" -cf - . | "${import[@]}" \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change "LABEL org.opencontainers.image.description=\"Debian $SUITE minbase (debootstrap, $(date -u +%Y-%m-%d)) with python3.11, python3-venv, ca-certificates\"" \
    --change 'CMD ["python3"]' \
    - "$BASE_TAG" >/dev/null
case $BUILDER in
    podman) podman --storage-driver vfs image ls "$BASE_TAG" ;;
    docker) docker image ls "$BASE_TAG" ;;
esac
