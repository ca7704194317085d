# Shared by scripts/test, scripts/demo and others (sourced).

# Runs a command; when standard output is not a terminal (CI, a log file), says every 25 s that
# it is still at work: cargo prints nothing while a crate compiles or a test runs for minutes,
# and a log that is silent that long looks hung.
keep_talking() { # label command...
  local label=$1; shift
  if [ -t 1 ]; then "$@"; return; fi
  local start ticker rc=0
  start=$(date +%s)
  # sleep's own output goes nowhere: a sleep left over from the killed loop must not hold the
  # caller's pipe open (a `$(...)` waits for it).
  ( while sleep 25 >/dev/null 2>&1; do echo "    ... still $label ($(( $(date +%s) - start )) s)"; done ) &
  ticker=$!
  "$@" || rc=$?
  kill "$ticker" 2>/dev/null || true
  wait "$ticker" 2>/dev/null || true
  return $rc
}

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

# A tool some tests need, from Debian's packages; without it those tests say SKIPPED.
ensure_tool() { # command package what-says-skipped
  command -v "$1" >/dev/null 2>&1 && return 0
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq || true
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$2" \
    || echo "!!! $2 could not be installed: $3 will say SKIPPED"
}

# nftables for the network-namespace tests (tests/netns.rs).
ensure_nftables() { ensure_tool nft nftables "the half-open link test"; }

# The URI of the Debian archive this machine's apt is configured with (sources.list, *.list and
# deb822 *.sources), for debootstrap and for a backports line: committed files name no mirror.
# A `deb` source with component main whose suite is CODENAME (default: this machine's) or
# CODENAME-something (updates, backports), never a security archive; preferred: the suite itself,
# and an archive whose downloaded Release file says "Origin: Debian" (or whose path ends in
# /debian) over a third-party one that reuses the codename. mirror+file:// sources are read
# through their list. Prints the URI (no trailing slash); 1 and a message on stderr if none.
debian_mirror() {
  local codename=${1:-}
  [ -n "$codename" ] || codename=$(. /etc/os-release; echo "${VERSION_CODENAME:-}")
  [ -n "$codename" ] || { echo "debian_mirror: no VERSION_CODENAME in /etc/os-release" >&2; return 1; }
  local files=() f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] && files+=("$f")
  done
  local best="" best_score=9 exact uri suite score list
  while read -r exact uri suite; do
    if [[ $uri == mirror+file://* ]]; then # apt-transport-mirror: the first entry of its list
      uri=$(awk '!/^[ \t]*(#|$)/ { print $1; exit }' "${uri#mirror+file://}" 2>/dev/null || true)
    fi
    [[ $uri =~ ^(https?|ftp|file):// ]] || continue
    [[ $uri == *security* ]] && continue
    uri=${uri%/}
    # apt's name for the downloaded Release file: the URI without scheme and user, / as _.
    list=${uri#*://}; list=${list#*@}; list=/var/lib/apt/lists/${list//\//_}_dists_${suite//\//_}
    if grep -qs '^Origin: Debian$' "${list}_InRelease" "${list}_Release"; then score=0
    elif [[ $uri == */debian ]]; then score=2
    else score=4
    fi
    score=$((score + exact))
    if [ "$score" -lt "$best_score" ]; then best=$uri; best_score=$score; fi
  done < <(awk -v cn="$codename" '
    function consider(types, uris, suites, comps,   t, u, s, n, i, j, k, hasdeb, hasmain) {
      hasdeb = 0; n = split(types, t, /[ \t]+/); for (i = 1; i <= n; i++) if (t[i] == "deb") hasdeb = 1
      hasmain = 0; n = split(comps, t, /[ \t]+/); for (i = 1; i <= n; i++) if (t[i] == "main") hasmain = 1
      if (!hasdeb || !hasmain) return
      n = split(uris, u, /[ \t]+/); k = split(suites, s, /[ \t]+/)
      for (i = 1; i <= n; i++) for (j = 1; j <= k; j++) {
        if (u[i] == "" || s[j] == "" || s[j] ~ /-security$/) continue
        if (s[j] == cn) print 0, u[i], s[j]
        else if (index(s[j], cn "-") == 1) print 1, u[i], s[j]
      }
    }
    function flush() {
      if (para && tolower(f["enabled"]) != "no") consider(f["types"], f["uris"], f["suites"], f["components"])
      delete f; para = 0; last = ""
    }
    FNR == 1 { flush(); deb822 = (FILENAME ~ /\.sources$/) }
    /^[ \t]*#/ { next }
    !deb822 {
      sub(/#.*/, ""); n = split($0, w, /[ \t]+/); i = (w[1] == "") ? 2 : 1
      if (w[i] != "deb") next
      i++
      if (w[i] ~ /^\[/) { while (i <= n && w[i] !~ /\]$/) i++; i++ } # [ options ]
      uri = w[i]; suite = w[i + 1]; comps = ""
      for (j = i + 2; j <= n; j++) comps = comps " " w[j]
      consider("deb", uri, suite, comps)
      next
    }
    /^[ \t]*$/ { flush(); next }
    /^[ \t]/ { if (last != "") f[last] = f[last] " " $0; next } # a folded continuation line
    {
      k = tolower(substr($0, 1, index($0, ":") - 1)); v = substr($0, index($0, ":") + 1)
      gsub(/^[ \t]+|[ \t]+$/, "", v); f[k] = v; last = k; para = 1
    }
    END { flush() }
  ' "${files[@]}" /dev/null)
  if [ -z "$best" ]; then
    echo "debian_mirror: no Debian archive for $codename (a deb source with component main and suite $codename, not a security archive) in /etc/apt/sources.list, /etc/apt/sources.list.d/*.list or *.sources; configure one, or set VM_MIRROR" >&2
    return 1
  fi
  echo "$best"
}

# openssl, for the TLS tests that make certificates as Mosquitto's guide does (tests/tls.rs).
ensure_openssl() {
  command -v openssl >/dev/null 2>&1 && return 0
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq || true
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends openssl
}

# tmux, for the test of `face2mqtt setup` on a terminal (tests/setup.rs).
ensure_tmux() { ensure_tool tmux tmux "the test of setup on a terminal"; }
