# Shared by scripts/fixtures and scripts/image (sourced): Debian roots made with debootstrap
# and imported as local images (there is no registry here).

# The Debian mirror this machine's apt already uses (no address is hard-coded here).
debian_mirror() {
  local uri
  uri=$(grep -h -m1 '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v security | head -n1 | awk '{print $2}')
  [ -z "$uri" ] && uri=$(grep -h -m1 '^deb ' /etc/apt/sources.list 2>/dev/null | awk '{print $2}')
  echo "${uri:?no Debian mirror configured in apt sources}"
}

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

# debian_image TAG PACKAGES [PREPARE]: a minbase bookworm root with PACKAGES (comma-separated),
# PREPARE (a function, given the root's path) run before import, imported as TAG; kept when
# TAG exists.
debian_image() {
  local tag=$1 packages=$2 prepare=${3:-}
  have_image "$tag" && { echo "image: $tag cached"; return; }
  local d; d=$(mktemp -d)
  echo "image: debootstrap bookworm with $packages for $tag..."
  debootstrap --variant=minbase --include="$packages" bookworm "$d" "$(debian_mirror)" \
    >/tmp/lifeboat-debootstrap.log 2>&1 \
    || { tail -20 /tmp/lifeboat-debootstrap.log; rm -rf "$d"; exit 1; }
  rm -rf "$d/var/cache/apt/archives/"*.deb "$d/var/lib/apt/lists/"*
  [ -n "$prepare" ] && "$prepare" "$d"
  tar -C "$d" -c . | docker import -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    -c 'CMD ["/bin/bash"]' - "$tag" >/dev/null
  rm -rf "$d"
  echo "image: built $tag"
}
