-- Prosody configuration for the Blether benchmark (filled in by bench/servers/prosody.py).
-- Fair-comparison settings (docs/performance.md): logging at warn; mod_limits not loaded (no
-- rate limits); passwords stored as SCRAM-SHA-1 keys (internal_hashed); STARTTLS offered, not
-- required (the generator chooses per scenario); no s2s; roughly the feature set Blether
-- loads by default; Nagle's algorithm off (TCP_NODELAY) like Blether and ejabberd: with
-- Prosody's default (nagle = true) each STARTTLS login waits ~40 ms for a delayed ACK.
run_as_root = true
daemonize = false
pidfile = "$dir/prosody.pid"
data_path = "$dir/data"
certificates = "$dir/certs"
log = { warn = "$dir/prosody.log" }

network_settings = { nagle = false }

interfaces = { "$ip" }
c2s_ports = { $c2s_port }
c2s_direct_tls_ports = { }
s2s_ports = { }

modules_enabled = {
    "roster"; "saslauth"; "tls"; "disco"; "blocklist"; "private"; "vcard";
    "version"; "time"; "lastactivity"; "ping";
}
modules_disabled = { "s2s" }

authentication = "internal_hashed"
storage = "internal"
c2s_require_encryption = false
allow_registration = false

VirtualHost "$domain"
    ssl = { key = "$keyfile", certificate = "$certfile" }
