# Kamailio 5.6 with the presence, rls and MySQL modules, from Debian 12's own packages (the same
# packages .ci/run installs and the tests run against). Used by compose.yaml for the presence
# server and for the one-shot creation of Kamailio's tables (kamailio-db-init.sh).
FROM debian:bookworm-slim

RUN apt-get update \
    && apt-get install -y --no-install-recommends kamailio kamailio-mysql-modules kamailio-presence-modules mariadb-client \
    && rm -rf /var/lib/apt/lists/*
COPY kamailio-db-init.sh /usr/local/bin/kamailio-db-init.sh

EXPOSE 5060/udp 5060/tcp
ENTRYPOINT []
CMD ["kamailio", "-DD", "-E", "-f", "/etc/kamailio/kamailio.cfg"]
