// The service definitions `rdsd install-service` writes. systemd/rdsd.service and launchd/dev.rdsd.daemon.plist
// in the repository are these same texts for an `rdsd` found on PATH (a test keeps them in sync).

export interface ServiceCommand {
  /** Absolute path of node, or /usr/bin/env for the repository's generic copies. */
  node: string;
  /** The rdsd bin script (or "rdsd" with /usr/bin/env). */
  script: string;
  /** --config for the daemon; none: the daemon's own lookup ($RDSD_CONFIG, ~/.config/rdsd/config.yaml). */
  config?: string | undefined;
}

export const LAUNCHD_LABEL = "dev.rdsd.daemon";

function daemonArgs(command: ServiceCommand): string[] {
  return [command.node, command.script, "daemon", ...(command.config ? ["--config", command.config] : [])];
}

/** systemd's quoting: arguments with spaces or quotes in double quotes, `%` doubled (specifiers), `$` doubled. */
function systemdQuote(arg: string): string {
  const escaped = arg.replace(/%/g, "%%").replace(/\$/g, "$$$$");
  return /[\s"'\\]/.test(escaped) ? `"${escaped.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"` : escaped;
}

/**
 * The unit's start-up protocol. notify: the daemon sends READY=1 once every listener is bound, so units
 * ordered after rdsd (and `systemctl start`) wait for it. simple: for an install without the sd_notify
 * addon (built at install when a C compiler is there); systemd would otherwise wait for a READY=1 that
 * never comes and kill the daemon at TimeoutStartSec.
 */
function serviceType(notify: boolean): string {
  return notify
    ? `# Type=notify: the daemon sends READY=1 once its listeners are bound, STATUS= with each target's state
# (systemctl --user status rdsd), RELOADING=1 on reload and STOPPING=1 on stop.
Type=notify`
    : `# Type=simple: this rdsd was installed without its native sd_notify addon (no C compiler then), so it cannot
# tell systemd when it is ready. Reinstall it where gcc, make and python3 are present for Type=notify.
Type=simple`;
}

/** A systemd user unit: restarted on failure (not after `rdsd stop`, which exits 0), reload by SIGHUP. */
export function systemdUnit(command: ServiceCommand, options: { notify?: boolean } = {}): string {
  return `# rdsd: private RDS PostgreSQL on localhost (SSM tunnels, IAM login, verify-full TLS).
# A systemd *user* unit: \`rdsd install-service\` writes it to ~/.config/systemd/user/rdsd.service with
# this machine's node and rdsd paths. Then: systemctl --user daemon-reload && systemctl --user enable --now rdsd
# (and \`loginctl enable-linger $USER\` to keep it running after logout).

[Unit]
Description=rdsd: private RDS PostgreSQL on localhost

[Service]
${serviceType(options.notify ?? true)}
ExecStart=${daemonArgs(command).map(systemdQuote).join(" ")}
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
RestartSec=5s
# SIGTERM: stop accepting, give open connections their grace, terminate the SSM sessions, remove the socket.
KillSignal=SIGTERM
TimeoutStopSec=30s
# Readable lines go to the journal (journalctl --user -u rdsd); JSON lines to ~/.local/state/rdsd/rdsd.log.

[Install]
WantedBy=default.target
`;
}

function xml(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

/** A LaunchAgent: started at login, kept alive after a failure (not after `rdsd stop`, which exits 0). */
export function launchdPlist(command: ServiceCommand, logDir: string): string {
  const args = daemonArgs(command).map((a) => `    <string>${xml(a)}</string>`).join("\n");
  return `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<!-- rdsd LaunchAgent: \`rdsd install-service\` writes it to ~/Library/LaunchAgents/${LAUNCHD_LABEL}.plist
     with this machine's node and rdsd paths. Then: launchctl bootstrap gui/$(id -u) ~/Library/LaunchAgents/${LAUNCHD_LABEL}.plist -->
<plist version="1.0">
<dict>
  <key>Label</key>
  <string>${LAUNCHD_LABEL}</string>
  <key>ProgramArguments</key>
  <array>
${args}
  </array>
  <key>RunAtLoad</key>
  <true/>
  <key>KeepAlive</key>
  <dict>
    <key>SuccessfulExit</key>
    <false/>
  </dict>
  <key>ThrottleInterval</key>
  <integer>5</integer>
  <key>ProcessType</key>
  <string>Background</string>
  <key>StandardOutPath</key>
  <string>${xml(logDir)}/rdsd.out.log</string>
  <key>StandardErrorPath</key>
  <string>${xml(logDir)}/rdsd.err.log</string>
</dict>
</plist>
`;
}
