# Shared by scripts/test and scripts/demo.

# Installs Mosquitto (broker and clients) from Debian's packages when missing.
ensure_mosquitto() {
  local need=()
  command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
  command -v mosquitto_sub >/dev/null 2>&1 || need+=(mosquitto-clients)
  [ ${#need[@]} -eq 0 ] && return 0
  echo "==> installing ${need[*]} (Debian packages)"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
}

mosquitto_bin() {
  command -v mosquitto 2>/dev/null || echo /usr/sbin/mosquitto
}

# nftables for the network-namespace tests (tests/netns.rs); they skip, loudly, without it.
ensure_nftables() {
  command -v nft >/dev/null 2>&1 && return 0
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq || true
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends nftables \
    || echo "!!! nftables could not be installed: the half-open link test will say SKIPPED"
}
