/** A small line writer: kernels are built line by line, indented by structure. */
export class Writer {
  private readonly lines: string[] = [];

  /** `depth`: the indent level the first lines start at. */
  constructor(private depth = 0) {}

  line(...ls: string[]): this {
    for (const l of ls) this.lines.push(l ? "  ".repeat(this.depth) + l : "");
    return this;
  }

  /** `head {`, the body one level in, then `}`. */
  block(head: string, body: () => void): this {
    this.line(`${head} {`);
    this.depth++;
    body();
    this.depth--;
    return this.line("}");
  }

  toString(): string {
    return this.lines.join("\n");
  }
}
