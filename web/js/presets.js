// The presets: each is a URL (#preset=<id>) that sets the controls and says in one line
// what the reader should see. Every sentence is checked on the page's own numbers by
// tests/e2e/lesson.test.mjs after a bounded number of steps (the `check` there mirrors
// the sentence); change a sentence and its check together.
//
// `settings` holds only what the preset changes: the rest comes from the defaults of the
// data's kind (pageDefaults() from the library, smaller sizes on a software adapter).

export const PRESETS = [
  {
    id: 'independent',
    title: 'Independent SAEs: the motivation',
    settings: { data: 'paper', lambda: 1, form: 'match', compare: true, view: 'baseline' },
    says: 'The motivation plot shows the baseline: two SAEs trained independently. Latents that the other SAE also '
      + 'learned (high y) are the ones on true features (high x): the correlation r is positive (about 0.8 by step 600).',
  },
  {
    id: 'authors',
    title: "The authors' setting (one-to-one, λ 3)",
    settings: { data: 'paper', lambda: 3, form: 'match', compare: true, view: 'mfr' },
    says: "The form and λ of the authors' final synthetic code. The two MFR SAEs become copies of each other "
      + '(one-to-one agreement above 0.99 by step 300, the baseline about 0.9), and truth recovery ends level with the '
      + 'baseline (within 0.03), not above it.',
  },
  {
    id: 'crowding',
    title: 'Max form: crowding (λ 3)',
    settings: { data: 'paper', lambda: 3, form: 'max', compare: true, view: 'mfr' },
    says: "The earlier max form rewards each latent for having some partner, so several crowd onto one: MFR's max "
      + 'MMCS stays far above its one-to-one agreement (a wider gap than the baseline\'s), and its truth recovery falls '
      + 'below the baseline.',
  },
  {
    id: 'collapse',
    title: 'One-to-one collapse at large λ (λ 10)',
    settings: { data: 'paper', lambda: 10, form: 'match', compare: true, view: 'mfr' },
    says: 'At λ 10 the penalty wins: the MFR pair is one dictionary twice (one-to-one agreement above 0.99, the heatmap '
      + 'a clean diagonal), and truth recovery is no better than the baseline.',
  },
  {
    id: 'overcomplete',
    title: 'More latents than features (m 128)',
    settings: { data: 'paper', m: 128, lambda: 1, form: 'match', compare: true, view: 'baseline' },
    says: 'With 128 latents for 64 true features both runs find the features (truth recovery above 0.9, level within '
      + "0.02); the spare latents differ between independent SAEs (baseline agreement below 0.9) and MFR makes them agree "
      + '(above 0.95): agreement without any gain in truth.',
  },
  {
    id: 'eeg',
    title: 'EEG Eye State (λ 0.5)',
    settings: { data: 'eeg-eyes', lambda: 0.5, form: 'match', compare: true },
    says: "Real EEG at the authors' committed EEG λ 0.5. There is no ground truth, so the card compares the error on "
      + 'the held-out last 20 % of the recording: the MFR pair becomes near-copies (one-to-one agreement above 0.99 by '
      + "step 150, the baseline's about 0.5) while its held-out MSE stays level with the baseline's (within 2 %).",
  },
  {
    id: 'lm',
    title: 'LM activations (λ 0.005)',
    settings: { data: 'lm', lambda: 0.005, form: 'match', compare: true },
    says: "SmolLM2-135M's residual stream at the authors' GPT-2 λ 0.005. Even this small a penalty raises the "
      + "agreement (about 0.5 against the baseline's 0.3 by step 150) and leaves fewer latents dead, while the held-out "
      + 'MSE stays level with the baseline\'s (within 2 %).',
  },
];

export const presetById = (id) => PRESETS.find((p) => p.id === id) || null;
