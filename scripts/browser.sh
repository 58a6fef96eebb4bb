#!/usr/bin/env bash
# Sourced by test.sh: make sure a headless Chromium is there for the HTML report test, installing Debian's
# `chromium` package where it is missing (as root, or through sudo), and require the test to run.
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
    as_root=""
    [ "$(id -u)" = 0 ] || as_root="sudo"
    if command -v apt-get >/dev/null 2>&1; then
        echo "routelora: installing chromium for the HTML report test (apt-get)" >&2
        { $as_root apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
            $as_root apt-get install -y -qq --no-install-recommends chromium; } >/dev/null 2>&1 \
            || echo "routelora: apt-get could not install chromium" >&2
    fi
fi
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
    export ROUTELORA_REQUIRE_BROWSER=1
else
    echo "routelora: no chromium and no apt-get here; the HTML report's browser test is skipped" >&2
fi
