"""mediasrv.analysis: post-call analysis on ONNX (F18 speech-to-text, F19 outcome labels,
F20 caller gender). Pure: a WAV file in, an AnalysisResult out; imports nothing else from
mediasrv. Nothing is imported here so that `import mediasrv.analysis` stays cheap.

Public API:
- analyzer.AnalysisConfig, analyzer.Analyzer(config).analyze(path, business) -> AnalysisResult,
  analyzer.analyze_file(path, config=None, business="default"), AnalysisResult.to_dict()
- cli.analyze_main(args) (`mediasrv analyze`), cli.models_main(args) (`mediasrv models ...`)
- modelbuild.main(argv) / modelbuild.build(names, out, force) (`mediasrv models build`)
- manifest.default_models_dir() ($MEDIASRV_MODELS_DIR or ~/.cache/mediasrv/models)
- labels.LabelSet / labels.classify / labels.normalize, scoring.cer / scoring.wer

Modules: audio (WAV incl. G.711, resampling), vad (silero), mel, tokenizer, whisper (ORT
beam search), whisper_graph + ct2 (build time: ONNX graphs from CTranslate2 weights), stt
(timeline + hallucination guards), crosstalk (echo of the other leg), pitch (YIN), gender,
labels, sources (registry packages), manifest.
"""
