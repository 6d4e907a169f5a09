#!/usr/bin/env bash
# Makes sure `redis-server` (and redis-cli, redis-benchmark) are installed:
# installs Debian's package when this user can, else names the one command to run.
set -euo pipefail
if command -v redis-server >/dev/null 2>&1; then
  exit 0
fi
echo "redis-server is missing; installing Debian's redis-server package..." >&2
if command -v apt-get >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  fi
fi
if ! command -v redis-server >/dev/null 2>&1; then
  echo "redis-server is not installed. Install it, then run this again:" >&2
  echo "  sudo apt-get install -y redis-server    (or: brew install redis)" >&2
  exit 1
fi
