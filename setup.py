"""Packaging for bert4keras_ext (Keras 3 / TensorFlow home for the bert4keras way of Chinese NLP)."""
import os
import re

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def read_version():
    with open(os.path.join(HERE, 'bert4keras_ext', '__init__.py'), encoding='utf-8') as f:
        return re.search(r"^__version__ = '([^']+)'", f.read(), re.M).group(1)


with open(os.path.join(HERE, 'README.md'), encoding='utf-8') as f:
    long_description = f.read()

setup(
    name='bert4keras_ext',
    version=read_version(),
    description='bert4keras-style Chinese BERT/ALBERT/WoBERT toolkit for Keras 3 on TensorFlow',
    long_description=long_description,
    long_description_content_type='text/markdown',
    license='Apache License 2.0',
    packages=find_packages(include=['bert4keras_ext', 'bert4keras_ext.*']),
    package_data={'bert4keras_ext': ['checkpoints_manifest.json']},
    python_requires='>=3.10',
    install_requires=[
        'tensorflow>=2.16',
        'keras>=3.0',
        'numpy',
        'h5py',
        'tqdm',
        'safetensors',  # Hugging Face checkpoints (config.json + model.safetensors), read/written with its numpy API
    ],
    extras_require={
        'test': ['pytest', 'jieba', 'sympy'],  # jieba: the suite covers WoBERT; sympy: the ape210k example port
        'wobert': ['jieba'],
    },
    entry_points={
        'console_scripts': [
            'bert4keras-ext=bert4keras_ext.__main__:main',
        ],
    },
)
