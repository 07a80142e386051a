# statsgate: build with the pinned lockfile, run as an unprivileged user. A drop-in for the
# GE Heartbeat proxy: other containers POST /beat to http://statsgate:8080/beat.
# tests/service.rs holds this file to the configuration keys (check-config with these ENV
# lines), to EXPOSE and VOLUME, and to a build context that has what Cargo.toml names.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY config ./config
# The release profile that `cargo deb` builds the Debian package with.
RUN cargo build --release --locked --bin statsgate

FROM debian:bookworm-slim
# The CA bundle: HTTPS to Keystone and Monasca verifies against it (the slim image has none).
# A fixed uid/gid, so that a bind-mounted spool can be chowned ahead: 10001.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 statsgate \
 && useradd --system --uid 10001 --gid statsgate --no-create-home --shell /usr/sbin/nologin statsgate \
 && mkdir -p /var/lib/statsgate && chown statsgate:statsgate /var/lib/statsgate && chmod 0700 /var/lib/statsgate
COPY --from=build /src/target/release/statsgate /usr/local/bin/statsgate
COPY config/statsgate.yaml /etc/statsgate/statsgate.yaml
# Inside a container the wildcard is the point; the published ports decide who reaches them:
# statsd on 8125/udp and the HTTP listener (POST /beat, as the GE proxy served it) on
# 8080/tcp for the other containers, the admin port (8126) published on the host's loopback
# only (-p 127.0.0.1:8126:8126). On the wildcard, POST /v2.0/metrics, liz's POST and the
# Rainbow path stay off (their `auto` means loopback only): they forward without a credential.
# The spool and gauge checkpoint live on a volume, so outages and restarts lose nothing.
ENV STATSGATE_STATSD__LISTEN=0.0.0.0:8125 \
    STATSGATE_HTTP__LISTEN=0.0.0.0:8080 \
    STATSGATE_ADMIN__LISTEN=0.0.0.0:8126 \
    STATSGATE_BUFFER__SPOOL_DIR=/var/lib/statsgate
VOLUME /var/lib/statsgate
EXPOSE 8125/udp 8080/tcp 8126/tcp
USER statsgate
HEALTHCHECK --interval=30s --timeout=3s CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8126 && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && grep -q '200 OK' <&3"]
ENTRYPOINT ["/usr/local/bin/statsgate", "--config", "/etc/statsgate/statsgate.yaml"]
CMD ["run"]
