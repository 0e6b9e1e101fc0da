// The trainer's unit of preference data, whatever file shape it came from.
export type ChatRole = 'system' | 'user' | 'assistant';

export interface ChatMessage {
  role: ChatRole;
  content: string;
}

export interface PreferencePair {
  // The conversation up to (not including) the responses; the last message is usually `user`.
  prompt: ChatMessage[];
  chosen: string;
  rejected: string;
  // Bradley–Terry margin m in −log σ(r_c − r_r − m), when the file gives one.
  margin?: number;
  objective?: string;
  // Basename of the file the pair was read from (provenance, per-source accuracy).
  source: string;
  // Stable hash of prompt + chosen + rejected: the same pair gets the same id in every run.
  id: string;
}

// Which record shape a kept pair came from.
export type RecordFormat =
  | 'prompt_chosen_rejected' // strings, RewardBench / TRL "standard"
  | 'messages' // TRL conversational: message lists for chosen/rejected and/or prompt
  | 'hh_rlhf' // whole `\n\nHuman:` / `\n\nAssistant:` transcripts
  | 'pairwise_judgment' // AlpacaEval: instruction, output_1, output_2, preference
  | 'pandalm'; // PandaLM: instruction, input, response1, response2, annotator1..n

// Why a record was not turned into a pair. The file readers refuse a file with one of the first
// four (the record is not a preference record: a schema error to fix, not data to skip) and skip
// the rest (the record is one, but carries no usable preference), reporting the lines.
export type DropReason =
  | 'not_an_object'
  | 'unknown_format' // none of the shapes above
  | 'malformed' // the shape is recognised but a field is missing or has the wrong type
  | 'missing_prompt' // chosen/rejected with nothing to say what they answer
  | 'prompt_mismatch' // chosen and rejected answer different conversations
  | 'hh_unparseable' // an HH transcript without the Human/Assistant turn structure
  | 'identical_responses' // no preference signal
  | 'tie' // judgment or majority vote says neither is better
  | 'no_majority'; // annotators disagree with no majority

export interface ReadStats {
  source: string;
  records: number;
  kept: number;
  formats: Partial<Record<RecordFormat, number>>;
  dropped: Partial<Record<DropReason, number>>;
}
