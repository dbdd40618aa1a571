// Progress of long CLI work on stderr (stdout carries results and the server's JSON logs).

/** One self-overwriting line on a terminal; a line per 10% otherwise (logs, CI). */
export function progressLine(label: string): { update: (fraction: number, detail: string) => void; end: () => void } {
  const tty = process.stderr.isTTY;
  let lastStep = -1;
  return {
    update(fraction, detail) {
      const pct = Math.floor(Math.min(1, Math.max(0, fraction)) * 100);
      // a terminal redraws once per percent: a tiny model does hundreds of steps a second
      const step = tty ? pct : pct - (pct % 10);
      if (step === lastStep) return;
      lastStep = step;
      const width = 30,
        filled = Math.round((pct / 100) * width);
      const line = `${label} [${"#".repeat(filled)}${"-".repeat(width - filled)}] ${pct}% ${detail}`;
      process.stderr.write(tty ? `\r${line}` : `${line}\n`);
    },
    end() {
      if (tty && lastStep >= 0) process.stderr.write("\n");
    },
  };
}
