#!/usr/bin/env bash
# Build the image here and smoke-test it: no base image can be pulled on these machines, so the base is made
# from Debian's packages (debootstrap), and buildah builds the Dockerfile on it and runs the result
# (`buildah run --isolation chroot`: the only way to run a container here; podman run is refused).
#
#   1. wheels: the project and its dependencies, made with the project's own pip (build/wheels)
#   2. base:   debootstrap (minbase, python3, python3-venv, ca-certificates) imported as localhost/smtp-diag-base
#   3. image:  buildah bud of the Dockerfile with BASE=that base, as localhost/smtp-diag:VERSION
#   4. smoke:  `smtp-diag --version` in it, then a real check (STARTTLS + AUTH) against fake-smtp on loopback
#
# Needs root (debootstrap, buildah). Everything lives under build/ (buildah's storage too); `make clean`
# removes it. DEBIAN_SUITE and DEBIAN_MIRROR choose the base (default: bookworm, debootstrap's mirror).
set -euo pipefail
cd "$(dirname "$0")/../.."

VERSION=$(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("smtp-diag"))')
SUITE=${DEBIAN_SUITE:-bookworm}
BUILD=$PWD/build
BASE_IMAGE=localhost/smtp-diag-base:$SUITE
IMAGE=localhost/smtp-diag:$VERSION
buildah() { command buildah --root "$BUILD/buildah/root" --runroot "$BUILD/buildah/run" --storage-driver vfs "$@"; }

echo "== wheels"
rm -rf "$BUILD/wheels"
.venv/bin/python -m pip wheel --quiet --wheel-dir "$BUILD/wheels" '.[postgres]'

if ! buildah inspect --type image "$BASE_IMAGE" >/dev/null 2>&1; then
  echo "== base: debootstrap $SUITE"
  rm -rf "$BUILD/rootfs"
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates "$SUITE" "$BUILD/rootfs" \
    ${DEBIAN_MIRROR:+"$DEBIAN_MIRROR"} >"$BUILD/debootstrap.log" 2>&1 \
    || { tail -20 "$BUILD/debootstrap.log"; exit 1; }
  rm -rf "$BUILD/rootfs/var/cache/apt/archives/"*.deb "$BUILD/rootfs/var/lib/apt/lists/"*
  tar -C "$BUILD/rootfs" -cf "$BUILD/rootfs.tar" .
  ctr=$(buildah from scratch)
  buildah add "$ctr" "$BUILD/rootfs.tar" / >/dev/null
  buildah commit --quiet "$ctr" "$BASE_IMAGE" >/dev/null
  buildah rm "$ctr" >/dev/null
  rm -rf "$BUILD/rootfs" "$BUILD/rootfs.tar"
fi

echo "== image: $IMAGE on $BASE_IMAGE"
buildah bud --quiet --isolation chroot --format docker --build-arg "BASE=$BASE_IMAGE" --tag "$IMAGE" . >/dev/null
buildah rmi --prune >/dev/null 2>&1 || true  # the previous build's image, now untagged
buildah images --format '{{.Name}}:{{.Tag}} {{.Size}}' "$IMAGE"

echo "== smoke: --version"
ctr=$(buildah from "$IMAGE")
trap 'buildah rm "$ctr" >/dev/null 2>&1 || true; [ -n "${fake:-}" ] && kill "$fake" 2>/dev/null || true' EXIT
buildah run --isolation chroot "$ctr" -- smtp-diag --version
buildah run --isolation chroot "$ctr" -- id

echo "== smoke: a check against fake-smtp (STARTTLS + AUTH) from inside the container"
work=$(mktemp -d)
password="image-test-$RANDOM$RANDOM"
mkfifo "$work/fake.out"
FAKE_SMTP_PASSWORD=$password .venv/bin/fake-smtp --tls starttls --auth required --username app \
  --ca-out "$work/ca.pem" --port 0 >"$work/fake.out" 2>"$work/fake.err" &
fake=$!
exec 3<"$work/fake.out"
port=""
while read -r -t 30 kind _host value <&3; do  # it prints its ports, then "ready" once it listens
  [ "$kind" = smtp ] && port=$value
  [ "$kind" = ready ] && break
done
[ -n "$port" ] || { cat "$work/fake.err"; exit 1; }
buildah copy --chown 10001:10001 "$ctr" "$work/ca.pem" /tmp/ca.pem >/dev/null
# chroot isolation shares this machine's network: the fake server's loopback port is the container's.
buildah run --isolation chroot --env "SMTP_PASSWORD=$password" "$ctr" -- smtp-diag check \
  --host 127.0.0.1 --port "$port" --from-email app@example.test --username app --password-env SMTP_PASSWORD \
  --ca-file /tmp/ca.pem --tls-mode starttls
rm -rf "$work"
echo "== image-test passed: $IMAGE"
