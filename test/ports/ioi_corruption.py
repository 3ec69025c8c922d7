"""Port of the IOI authors' RAND flips (redwoodresearch/Easy-Transformer easy_transformer/ioi_dataset.py
gen_flipped_prompts, lines 340-401, and IOIDataset.gen_flipped_prompts, lines 859-905), written for
tflens's tests, applied as the ABC set is built: IO->RAND, then S->RAND, then S1->RAND, each on the words
of the sentence (text.split(" ")). IO->RAND redraws until the name differs from the current IO and S;
S->RAND and S1->RAND draw from every name.
stdin: {prompts: [{text, IO, S}], names, seed}
stdout: {prompts: [{text, IO, S}]}
"""
import json
import sys

import numpy as np

x = json.load(sys.stdin)
names = x["names"]
rs = np.random.RandomState(x["seed"])


def last_index(t, w):
    return len(t) - t[::-1].index(w) - 1


def flip(prompt, what):
    t = prompt["text"].split(" ")
    prompt = dict(prompt)
    if what == "IO":
        new = names[rs.randint(len(names))]
        while new == prompt["IO"] or new == prompt["S"]:
            new = names[rs.randint(len(names))]
        t[t.index(prompt["IO"])] = new
        t[t.index(prompt["IO"])] = new
        prompt["IO"] = new
    else:
        new = names[rs.randint(len(names))]
        t[t.index(prompt["S"])] = new
        if what == "S":
            t[last_index(t, prompt["S"])] = new
            prompt["S"] = new
    prompt["text"] = " ".join(t)
    return prompt


prompts = x["prompts"]
for what in ("IO", "S", "S1"):
    prompts = [flip(p, what) for p in prompts]
json.dump({"prompts": prompts}, sys.stdout)
