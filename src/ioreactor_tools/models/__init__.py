"""The course's server models (网络编程实战, 性能篇_下 "C10K 解决方案"), one per module.

Every model serves the same protocols (:mod:`.handlers`) behind the same interface
(:class:`.base.ServerModel`), so the C10K lab can compare them fairly; the registry
(:mod:`.registry`) names them for ``ioreactor model NAME``.
"""
