# Helpers shared by the packaging scripts (sourced, not run).
# shellcheck shell=bash

# The crate version from Cargo.toml, e.g. 0.1.0.
crate_version() {
    python3 -c 'import tomllib,sys; print(tomllib.load(open(sys.argv[1],"rb"))["package"]["version"])' Cargo.toml
}

# The release binary for a Rust target triple in DIR, or an error that says
# how to build it.
release_binary() { # release_binary DIR TRIPLE
    local f="$1/dbus-mqtt-devices-$2"
    if [ ! -f "$f" ]; then
        echo "missing $f; build it with scripts/build-release" >&2
        return 1
    fi
    echo "$f"
}

# Reproducible tar: sorted, root-owned, fixed mtime (SOURCE_DATE_EPOCH or the
# last commit).
repro_tar() { # repro_tar OUT.tar.gz DIR NAMES...
    local out=$1 dir=$2
    shift 2
    local mt=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
    tar --format=gnu --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$mt" \
        -C "$dir" -cf - "$@" | gzip -9n > "$out"
}

# The GitHub repository (owner/name) the release is built from:
# $GITHUB_REPOSITORY in GitHub Actions, else the `origin` remote, else the
# `repository` of Cargo.toml.
github_repository() {
    local url repo=${GITHUB_REPOSITORY:-}
    if [ -z "$repo" ] && url=$(git remote get-url origin 2>/dev/null); then
        repo=$(sed -nE 's#^(https://|ssh://git@|git@)github\.com[:/]([^/]+/[^/]+)$#\2#p' <<<"${url%.git}")
    fi
    if [ -z "$repo" ]; then
        url=$(python3 -c 'import tomllib,sys; print(tomllib.load(open(sys.argv[1],"rb"))["package"].get("repository",""))' Cargo.toml)
        repo=$(sed -nE 's#^https://github\.com/([^/]+/[^/]+)/?$#\1#p' <<<"${url%.git}")
    fi
    if [ -z "$repo" ]; then
        echo "cannot tell the GitHub repository: set GITHUB_REPOSITORY=owner/name" >&2
        return 1
    fi
    echo "$repo"
}
