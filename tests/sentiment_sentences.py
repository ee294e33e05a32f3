"""Free sentences a person might type into a review site, hand-written for the sentiment_lstm
checks (none of them is in models/data/sentiment/; tests/unit/models checks that)."""

from __future__ import annotations

POSITIVE = [
    "A masterpiece, I loved it.",
    "The acting was truly wonderful and the story kept me hooked until the very end.",
    "Not bad at all, I would happily watch it again.",
    "Best pizza I have had in years, the crust was perfect.",
    "The staff were friendly and our room was spotless.",
    "This phone is fast, the battery lasts all day and the camera takes gorgeous photos.",
    "Absolutely fantastic service, we will definitely come back.",
    "Great value for the money, I am very happy with it.",
    "The soundtrack is beautiful and the ending made me smile.",
    "Highly recommended to anyone who likes a good mystery!",
    "Five stars, it works exactly as described.",
    "My kids loved it and so did I.",
    "Delicious food, generous portions and a lovely atmosphere.",
    "These headphones sound amazing and are very comfortable to wear.",
    "One of the funniest movies I have seen in a long time.",
    "The hotel was clean, quiet and close to everything.",
    "Easy to set up and it just works.",
    "A charming, heartfelt film with brilliant performances.",
    "Our waiter was attentive and the dessert was excellent.",
    "I was pleasantly surprised by how good it was.",
    "Shipping was quick and the quality is excellent.",
    "What a great experience from start to finish.",
    "I enjoyed every single page of this novel.",
    "Nothing to complain about, a perfect little cafe.",
]

NEGATIVE = [
    "A complete waste of time and money.",
    "The food was cold and the waiter was rude.",
    "It broke after two days and customer support never answered.",
    "The worst movie I have ever seen.",
    "Boring, predictable and far too long.",
    "I would not recommend this hotel to anyone.",
    "The battery dies within a few hours, very disappointing.",
    "Terrible service, we waited an hour for our food.",
    "The acting was awful and the dialogue was painful to listen to.",
    "Do not buy this, it stopped working after a week.",
    "The room was dirty and smelled of smoke.",
    "I fell asleep halfway through, it was so dull.",
    "Overpriced and bland, I will not be going back.",
    "Not worth the price at all.",
    "What a disappointment, the sequel is nothing like the original.",
    "The instructions were confusing and the parts did not fit.",
    "Poor quality, it feels cheap and flimsy.",
    "The story made no sense and the ending was terrible.",
    "I regret buying this phone.",
    "Horrible experience, the staff ignored us all evening.",
    "The pasta was overcooked and the sauce had no flavor.",
    "Save your money and skip this one.",
    "The screen is dim and the speakers sound cheap.",
    "Not good, the plot was a mess and the jokes fell flat.",
]

LABELLED = [(s, "positive") for s in POSITIVE] + [(s, "negative") for s in NEGATIVE]
