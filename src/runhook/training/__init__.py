"""`runhook.init` and the training-framework adapters (Lightning, Transformers, Keras,
W&B). May import `client` and every room below it; imported only on demand (by
`runhook.init` or an adapter's own import), so `import runhook` never loads a
framework, and no framework is imported until its adapter is."""

from __future__ import annotations
