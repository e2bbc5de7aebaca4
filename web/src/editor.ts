// The PromQL expression editor: CodeMirror with Prometheus's PromQL language support
// (highlighting, completion from this server's label and metadata endpoints, the parser's
// lint), plus markers for the positions the server's errors and annotations point at.

import { autocompletion, closeBrackets, closeBracketsKeymap, completionKeymap } from '@codemirror/autocomplete';
import { defaultKeymap, history, historyKeymap, insertNewline } from '@codemirror/commands';
import { bracketMatching, defaultHighlightStyle, syntaxHighlighting } from '@codemirror/language';
import { type Diagnostic, lintGutter, setDiagnostics } from '@codemirror/lint';
import { EditorState } from '@codemirror/state';
import { EditorView, keymap, placeholder } from '@codemirror/view';
import { PromQLExtension } from '@prometheus-io/codemirror-promql';

export interface Editor {
  view: EditorView;
  value(): string;
  /** Replaces the whole text with `text`. */
  set(text: string): void;
  /** Marks the places `messages` point at (`1:5:` or a trailing `(1:5)`), as errors or warnings. */
  mark(messages: { text: string; severity: 'error' | 'warning' | 'info' }[]): void;
}

export function createEditor(parent: HTMLElement, initial: string, run: () => void): Editor {
  const promql = new PromQLExtension()
    .setComplete({ remote: { url: window.location.origin, cache: { maxAge: 5 * 60 * 1000 } } })
    .activateCompletion(true)
    .activateLinter(true);
  const view = new EditorView({
    parent,
    state: EditorState.create({
      doc: initial,
      extensions: [
        history(),
        bracketMatching(),
        closeBrackets(),
        autocompletion(),
        syntaxHighlighting(defaultHighlightStyle, { fallback: true }),
        lintGutter(),
        placeholder('Expression (press Enter to run, Shift+Enter for a new line)'),
        keymap.of([
          {
            key: 'Enter',
            run: () => {
              run();
              return true;
            },
          },
          { key: 'Shift-Enter', run: insertNewline },
          ...closeBracketsKeymap,
          ...completionKeymap,
          ...historyKeymap,
          ...defaultKeymap,
        ]),
        EditorView.lineWrapping,
        promql.asExtension(),
      ],
    }),
  });
  return {
    view,
    value: () => view.state.doc.toString(),
    set(text) {
      view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: text } });
    },
    mark(messages) {
      const doc = view.state.doc;
      const diagnostics: Diagnostic[] = [];
      for (const m of messages) {
        const at = position(m.text);
        if (at === null || at.line < 1 || at.line > doc.lines) {
          continue;
        }
        const line = doc.line(at.line);
        let from = Math.min(line.from + Math.max(at.col - 1, 0), line.to);
        // A position just past the end (input ended early) marks the last character.
        if (from === line.to && from > line.from) {
          from -= 1;
        }
        let to = line.to;
        if (at.endLine !== undefined && at.endCol !== undefined && at.endLine <= doc.lines) {
          to = Math.min(doc.line(at.endLine).from + at.endCol - 1, doc.length);
        } else {
          to = Math.min(from + 1, line.to);
        }
        diagnostics.push({
          from,
          to: Math.max(to, from),
          severity: m.severity,
          message: m.text,
          source: 'server',
        });
      }
      view.dispatch(setDiagnostics(view.state, diagnostics));
    },
  };
}

/**
 * The position a server message names, 1-based: `1:5: parse error: …`, `1:5-1:9: …` or an
 * annotation's trailing ` (1:5)`.
 */
export function position(
  text: string,
): { line: number; col: number; endLine?: number; endCol?: number } | null {
  const range = /(?:^|: )(\d+):(\d+)-(\d+):(\d+): /.exec(text);
  if (range) {
    return { line: +range[1], col: +range[2], endLine: +range[3], endCol: +range[4] };
  }
  const head = /(?:^|: )(\d+):(\d+): /.exec(text);
  if (head) {
    return { line: +head[1], col: +head[2] };
  }
  const tail = /\((\d+):(\d+)\)$/.exec(text.trim());
  if (tail) {
    return { line: +tail[1], col: +tail[2] };
  }
  return null;
}
