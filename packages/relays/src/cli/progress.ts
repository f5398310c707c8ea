/**
 * A one-line progress bar on stderr while a person watches; silent when stderr is not a terminal,
 * so scripts and logs get only the final result.
 */
export function progressBar(label: string, total: number): { update(done: number): void; finish(): void } {
  const tty = process.stderr.isTTY === true;
  const width = 30;
  const draw = (done: number): void => {
    if (!tty) return;
    const share = total === 0 ? 1 : Math.min(1, done / total);
    const filled = Math.round(share * width);
    process.stderr.write(`\r${label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total}`);
  };
  return {
    update: draw,
    finish() {
      draw(total);
      if (tty) process.stderr.write('\n');
    },
  };
}
