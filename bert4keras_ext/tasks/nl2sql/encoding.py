"""The baseline's input encoding and training labels.

One sequence per question::

    [CLS] q_1 … q_m [SEP] [CLS] (type) header_1 [SEP] [CLS] (type) header_2 [SEP] …

character by character (no WordPiece): every character is one token, whitespace becomes `[unused1]`, a
character missing from the vocabulary is tried lower-cased and NFKC-normalised, then becomes `[UNK]`. So
question character i is token i + 1, and a predicted span of tokens is a span of the question text.
`header_positions` are the positions of the headers' [CLS] tokens, where the sel/agg head reads. With
`mark_types=True` a marker token after each header's [CLS] says the column type (`[unused11]` text,
`[unused12]` real; both exist in every Google vocabulary). Segment ids are all 0, as in the baseline, unless
`header_segment=1` gives the header part segment 1.

Labels (`NL2SQLEncoder.labels`):
    sel  (H,)  agg class of each header, NOT_SELECTED (6) if the column is not selected
    conn ()    cond_conn_op
    op   (n,)  the operator of the condition whose value covers token i, NO_OP (4) elsewhere
    col  (n,)  that condition's column (read only where op != NO_OP)
Gold values are found in the question by `locate_value` (numbers by value, then literally, then the most
similar substring); a value that cannot be found is left untagged and counted in `unaligned`.
"""
import os
import unicodedata

from bert4keras_ext.tasks.nl2sql.data import NO_OP, NOT_SELECTED
from bert4keras_ext.tasks.nl2sql.values import locate_value

__all__ = ['NL2SQLEncoder']


class NL2SQLEncoder:
    """Char-level encoder of (question, table) pairs for the NL2SQL baseline.

    Args:
        token_dict: {token: id}, a `Tokenizer` (its `token_dict` is used) or a vocab.txt path.
        mark_types: put a column-type marker token after each header's [CLS].
        space_token: the token for whitespace characters.
        type_tokens: {'text': token, 'real': token} markers.
        header_segment: segment id of the header part (0 as in the baseline; 1 gives the headers BERT's
            second segment embedding).
    """

    def __init__(self, token_dict, mark_types=True, space_token='[unused1]', type_tokens=None, header_segment=0):
        if isinstance(token_dict, (str, os.PathLike)):
            from bert4keras_ext.tokenizers import load_vocab
            token_dict = load_vocab(token_dict)
        elif not isinstance(token_dict, dict):
            token_dict = getattr(token_dict, 'token_dict', None)
            if not isinstance(token_dict, dict):
                raise TypeError('NL2SQLEncoder: token_dict must be a dict, a Tokenizer or a vocab path')
        self.token_dict = token_dict
        self.mark_types = bool(mark_types)
        if header_segment not in (0, 1):
            raise ValueError('NL2SQLEncoder: header_segment must be 0 or 1, got %r' % (header_segment,))
        self.header_segment = header_segment
        type_tokens = dict(type_tokens or {'text': '[unused11]', 'real': '[unused12]'})
        required = ['[CLS]', '[SEP]', '[UNK]', space_token] + (list(type_tokens.values()) if mark_types else [])
        missing = [t for t in required if t not in token_dict]
        if missing:
            raise ValueError('NL2SQLEncoder: the vocabulary lacks %s' % missing)
        self._cls, self._sep, self._unk = token_dict['[CLS]'], token_dict['[SEP]'], token_dict['[UNK]']
        self._space = token_dict[space_token]
        self._type_ids = {kind: token_dict[token] for kind, token in type_tokens.items()}
        self._cache = {}

    def char_id(self, ch):
        """The token id of one character."""
        if ch in self._cache:
            return self._cache[ch]
        if ch.isspace():
            token_id = self._space
        else:
            token_id = self._unk
            for candidate in (ch, ch.lower(), unicodedata.normalize('NFKC', ch), unicodedata.normalize('NFKC', ch).lower()):
                if candidate in self.token_dict:
                    token_id = self.token_dict[candidate]
                    break
        self._cache[ch] = token_id
        return token_id

    def char_ids(self, text):
        """One id per character of `text` (len(result) == len(text))."""
        return [self.char_id(ch) for ch in text]

    def encode(self, question, table):
        """Encode one question with its table's headers.

        Returns:
            dict with token_ids (list, length n), segment_ids, header_positions (list of the H
            header [CLS] positions), question_length (m).
        """
        token_ids = [self._cls] + self.char_ids(question) + [self._sep]
        question_part = len(token_ids)
        header_positions = []
        for name, kind in zip(table.header, table.types):
            header_positions.append(len(token_ids))
            token_ids.append(self._cls)
            if self.mark_types:
                token_ids.append(self._type_ids[kind])
            token_ids.extend(self.char_ids(name))
            token_ids.append(self._sep)
        segment_ids = [0] * question_part + [self.header_segment] * (len(token_ids) - question_part)
        return {'token_ids': token_ids, 'segment_ids': segment_ids,
                'header_positions': header_positions, 'question_length': len(question)}

    def labels(self, question, sql, table, length):
        """Training targets of one example (see module docstring); `length` = len(token_ids).

        Returns:
            dict with sel (list H), conn (int), op (list n), col (list n), aligned / unaligned (counts).
        """
        sel = [NOT_SELECTED] * table.num_columns
        for col, agg in zip(sql['sel'], sql['agg']):
            sel[col] = agg
        op = [NO_OP] * length
        col_labels = [0] * length
        taken, aligned, unaligned = [], 0, 0
        for col, cond_op, value in sql['conds']:
            span = locate_value(question, value, taken)
            if span is None:
                unaligned += 1
                continue
            aligned += 1
            taken.append(span)
            for i in range(span[0] + 1, span[1] + 1):  # question char i is token i + 1
                op[i] = cond_op
                col_labels[i] = col
        return {'sel': sel, 'conn': sql['cond_conn_op'], 'op': op, 'col': col_labels,
                'aligned': aligned, 'unaligned': unaligned}
