// jsdom has no DragEvent; Lumino's drag-and-drop module subclasses it at import time.
if (typeof (globalThis as any).DragEvent === 'undefined') {
  (globalThis as any).DragEvent = class DragEvent extends MouseEvent {};
}
