# Lifeboat as a container next to the services it protects (deploy/compose.example.yml).
# There is no registry to pull from: `scripts/image release` builds the two local Debian bases
# with debootstrap (the runtime's, and a builder holding this machine's Rust toolchain), then
# this file, and tags lifeboat:VERSION and lifeboat:latest.
ARG BASE=lifeboat/debian:bookworm
ARG BUILDER=lifeboat/debian-rust:bookworm

# What runs: Debian's minimal root with CA certificates (HTTPS S3 and webhooks), no binary yet
# (`--target runtime` is what the tests add their own build to).
FROM ${BASE} AS runtime
ENV LIFEBOAT_HOST_ROOT=/host \
    LIFEBOAT_STATE_DIR=/var/lib/lifeboat
# The daemon never manages itself, even with enable_all.
LABEL org.opencontainers.image.title="lifeboat" \
      lifeboat.enable="false"
VOLUME ["/var/lib/lifeboat"]
EXPOSE 9187
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/lifeboat"]
CMD ["daemon", "--listen", "0.0.0.0:9187"]

# The binary, built from this repository (release profile, the lock file's versions).
FROM ${BUILDER} AS build
ARG GIT_REV=
ENV LIFEBOAT_GIT_REV=${GIT_REV}
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p lifeboat-cli --target-dir /tmp/target \
 && install -m 0755 /tmp/target/release/lifeboat /usr/local/bin/lifeboat \
 && rm -rf /tmp/target

FROM runtime
COPY --from=build /usr/local/bin/lifeboat /usr/local/bin/lifeboat
RUN ["/usr/local/bin/lifeboat", "--version"]
