# Sourced by run.sh and pgo-build.sh: installs Debian packages, as root or through sudo,
# refreshing the package lists only when the first attempt fails (a fresh machine's
# lists may be empty or stale).
apt_install() {
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo apt-get install -y "$@" || { $sudo apt-get update && $sudo apt-get install -y "$@"; }
}
