"""Task packages: reusable pieces of the competition tasks that the scripts in `examples/` run.

    bert4keras_ext.tasks.nl2sql   Chinese NL2SQL (TianChi 2019 format): data loading, the BERT baseline's
                                  encoding / heads / decoding, value snapping, safe SQLite execution,
                                  logical-form and execution accuracy.

Importing this package loads nothing heavy; each task imports TensorFlow only in its model module.
"""
