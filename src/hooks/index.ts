export * from './names.js';
export { HookRegistry, type HookContext, type HookFn, type HookFilter, type HookSpec, type HookHandle } from './registry.js';
