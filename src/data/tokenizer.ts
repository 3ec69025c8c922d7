/**
 * Word-level / character-level tokenizer.json files (Hugging Face `tokenizers` format) for the
 * synthetic tasks' vocabularies, so a trained toy model ships like any hub model.
 */
import { ValueError, expectedFound } from '../errors.js';

export interface WordLevelOptions {
  /** Split text into single characters (char-level) instead of on whitespace (word-level). */
  splitChars?: boolean;
  /** Unknown-token string; must be in the vocabulary (default "<unk>"). */
  unkToken?: string;
  /** Special tokens matched whole before pre-tokenisation (e.g. "<bos>"); must be in the vocabulary. */
  specialTokens?: string[];
}

/** A valid HF tokenizer.json object: WordLevel model over `vocab` (ids = array positions). */
export function wordLevelTokenizerJson(vocab: string[], options: WordLevelOptions = {}): Record<string, unknown> {
  const splitChars = options.splitChars ?? false;
  const unk = options.unkToken ?? '<unk>';
  const special = options.specialTokens ?? [];
  const ids: Record<string, number> = {};
  vocab.forEach((tok, i) => {
    if (typeof tok !== 'string' || tok.length === 0) {
      throw new ValueError(`wordLevelTokenizerJson vocab[${i}]`, expectedFound('a non-empty string', tok));
    }
    if (tok in ids) throw new ValueError(`wordLevelTokenizerJson vocab[${i}]`, `duplicate token ${JSON.stringify(tok)} (also at ${ids[tok]})`);
    if (splitChars && !special.includes(tok) && tok !== unk && [...tok].length !== 1) {
      throw new ValueError(`wordLevelTokenizerJson vocab[${i}]`, expectedFound('one character (splitChars) or a special token', tok));
    }
    if (!splitChars && !special.includes(tok) && tok !== unk && /\s/.test(tok)) {
      throw new ValueError(`wordLevelTokenizerJson vocab[${i}]`, expectedFound('a word without whitespace (word-level)', JSON.stringify(tok)));
    }
    ids[tok] = i;
  });
  if (!(unk in ids)) throw new ValueError('wordLevelTokenizerJson unkToken', expectedFound(`"${unk}" in the vocabulary`, 'absent'));
  for (const s of special) {
    if (!(s in ids)) throw new ValueError('wordLevelTokenizerJson specialTokens', expectedFound(`"${s}" in the vocabulary`, 'absent'));
  }
  const addedTokens = [...new Set([...special, unk])].map((content) => ({
    id: ids[content],
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  }));
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: addedTokens,
    normalizer: null,
    pre_tokenizer: splitChars
      ? { type: 'Split', pattern: { Regex: '[\\s\\S]' }, behavior: 'Isolated', invert: false }
      : { type: 'WhitespaceSplit' },
    post_processor: null,
    // Char-level: concatenate tokens; word-level: join with single spaces.
    decoder: splitChars
      ? { type: 'Fuse' }
      : null,
    model: { type: 'WordLevel', vocab: ids, unk_token: unk },
  };
}

/**
 * The matching tokenizer_config.json object. Tokenizers.js reads the unknown token from here for
 * WordLevel vocabularies (without it unknown words encode to undefined), so write both files.
 */
export function tokenizerConfigJson(options: { unkToken?: string; bosToken?: string; eosToken?: string; modelMaxLength?: number } = {}): Record<string, unknown> {
  const cfg: Record<string, unknown> = {
    tokenizer_class: 'PreTrainedTokenizerFast',
    unk_token: options.unkToken ?? '<unk>',
    clean_up_tokenization_spaces: false,
  };
  if (options.bosToken !== undefined) cfg.bos_token = options.bosToken;
  if (options.eosToken !== undefined) cfg.eos_token = options.eosToken;
  if (options.modelMaxLength !== undefined) cfg.model_max_length = options.modelMaxLength;
  return cfg;
}
