#!/bin/sh
# Container entrypoint: make the data directory usable, then run the command as the service user.
#
# Started as root (the default): a host directory bind-mounted at /data is often owned by root, and
# the server (uid 10001) could not create /data/jobs in it. The directory is handed to the service
# user (recursively, only when its owner differs), then root is dropped for good with setpriv.
# Started as another user (docker run --user, Kubernetes runAsUser): nothing can be fixed from here,
# so an unwritable directory is reported clearly instead of as a PermissionError deep in the server.
set -eu

DATA_DIR="${WAVESTREAM_DATA_DIR:-/data}"
SERVICE_UID=10001 # the image's `wavestream` user
SERVICE_GID=10001

if [ "$#" -eq 0 ]; then
    set -- wavestream serve
fi

if [ "$(id -u)" = 0 ]; then
    mkdir -p "$DATA_DIR"
    if [ "$(stat -c %u "$DATA_DIR")" != "$SERVICE_UID" ]; then
        chown -R "$SERVICE_UID:$SERVICE_GID" "$DATA_DIR"
    fi
    exec setpriv --reuid="$SERVICE_UID" --regid="$SERVICE_GID" --clear-groups --inh-caps=-all -- "$@"
fi

if ! mkdir -p "$DATA_DIR" 2>/dev/null || [ ! -w "$DATA_DIR" ]; then
    echo "wavestream: the data directory $DATA_DIR is not writable by uid $(id -u)." >&2
    echo "Make it writable for that user (chown/chmod on the host), or start the container as root" >&2
    echo "(the default) so that the entrypoint hands it to uid $SERVICE_UID." >&2
    exit 1
fi
exec "$@"
